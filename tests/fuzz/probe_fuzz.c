/*
 * probe_fuzz: probeResponse rules (resolver/probe.c) compiled from JSON, then matched against
 * a request.
 *
 * Input: the rules (a JSON array, as spec.probeResponse), a line "%%", then the request as
 * text: "METHOD TARGET" on the first line, then one "Name:value" header per line (the value
 * is everything after the first ':', spaces included, as the data plane hands it over). Every
 * method, target, name and value is copied into a buffer of its exact size, without a NUL,
 * as the data plane's spans are, so a read past one is an ASan report.
 *
 * Checks: a rule set that parses matches the same request the same way twice; an error
 * message is always written and NUL-terminated.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "resolver/probe.h"

#define MAX_FUZZ_HEADERS 64

/* An exact-size copy (no NUL after it); malloc(0) still gives a pointer ASan watches. */
static char *exact_copy(const uint8_t *p, size_t n)
{
    char *s = malloc(n ? n : 1);
    if (!s)
        abort();
    if (n)
        memcpy(s, p, n);
    return s;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_logging();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_reader r = {data, size, 0};
    const uint8_t *json;
    size_t json_len;
    if (!fuzz_next_until(&r, "\n%%\n", &json, &json_len))
        return 0;
    cJSON *array = cJSON_ParseWithLength((const char *)json, json_len);
    char err[512];
    memset(err, 'x', sizeof(err));
    struct probe_rules *rules = probe_rules_parse(array, "probeResponse", err, sizeof(err));
    cJSON_Delete(array);
    if (!rules) {
        if (!memchr(err, '\0', sizeof(err)) || err[0] == '\0')
            fuzz_fail("probe_rules_parse failed without a NUL-terminated message");
        return 0;
    }

    const uint8_t *line;
    size_t line_len;
    struct probe_request req = {0};
    struct probe_header headers[MAX_FUZZ_HEADERS];
    size_t n = 0;
    if (fuzz_next_line(&r, &line, &line_len)) {
        const uint8_t *sp = memchr(line, ' ', line_len);
        size_t mlen = sp ? (size_t)(sp - line) : line_len;
        req.method = exact_copy(line, mlen);
        req.method_len = mlen;
        size_t tlen = sp ? line_len - mlen - 1 : 0;
        req.target = exact_copy(sp ? sp + 1 : line, tlen);
        req.target_len = tlen;
    } else {
        req.method = exact_copy((const uint8_t *)"GET", 3);
        req.method_len = 3;
        req.target = exact_copy((const uint8_t *)"/", 1);
        req.target_len = 1;
    }
    while (n < MAX_FUZZ_HEADERS && fuzz_next_line(&r, &line, &line_len)) {
        const uint8_t *colon = memchr(line, ':', line_len);
        size_t nlen = colon ? (size_t)(colon - line) : line_len;
        size_t vlen = colon ? line_len - nlen - 1 : 0;
        headers[n].name = exact_copy(line, nlen);
        headers[n].name_len = nlen;
        headers[n].value = exact_copy(colon ? colon + 1 : line, vlen);
        headers[n].value_len = vlen;
        n++;
    }
    req.headers = headers;
    req.n_headers = n;

    const struct probe_response *first = probe_match(rules, &req);
    const struct probe_response *again = probe_match(rules, &req);
    if (first != again)
        fuzz_fail("probe_match gave two answers for one request");
    if (first && (first->status < 100 || first->status > 999 || !first->body))
        fuzz_fail("probe_match answered status %d", first->status);

    for (size_t i = 0; i < n; i++) {
        free((void *)headers[i].name);
        free((void *)headers[i].value);
    }
    free((void *)req.method);
    free((void *)req.target);
    probe_rules_free(rules);
    return 0;
}
