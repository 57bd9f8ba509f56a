/*
 * prom_fuzz: what Prometheus answers to /api/v1/query (controller/prom.c), and the query URLs
 * built around PromQL text.
 *
 * Input: the HTTP status as decimal text on the first line (empty: 200), then the response
 * body. The body is also used as a query and an uptime filter for prom_query_url and
 * prom_uptime_query, and as a trigger's JSON for prom_trigger_parse.
 *
 * Checks: PROM_OK comes with a finite value and an empty reason; any other status with a
 * NUL-terminated reason; the URL carries the query escaped (no space, no raw newline).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "controller/prom.h"
#include "fuzz_util.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_logging();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_reader r = {data, size, 0};
    const uint8_t *line;
    size_t len;
    long status = 200;
    if (fuzz_next_line(&r, &line, &len) && len) {
        char *s = fuzz_strndup(line, len);
        status = strtol(s, NULL, 10);
        free(s);
    }
    const uint8_t *rest = fuzz_rest(&r, &len);
    /* The HTTP client hands over an exact-size body (NUL after it, not counted). */
    char *body = fuzz_strndup(rest, len);

    double value = 12345;
    char reason[128];
    memset(reason, 'x', sizeof(reason));
    enum prom_status st = prom_parse_response(status, body, len, &value, reason, sizeof(reason));
    if (!memchr(reason, '\0', sizeof(reason)))
        fuzz_fail("prom_parse_response left its reason unterminated");
    if (st == PROM_OK && (reason[0] || isinf(value)))
        fuzz_fail("PROM_OK with reason \"%s\" or an infinite value", reason);
    if (st != PROM_OK && !reason[0])
        fuzz_fail("status %d without a reason", (int)st);
    if (!prom_status_reason(st))
        fuzz_fail("no reason name for status %d", (int)st);

    char *url = prom_query_url("http://prometheus:9090", body, (time_t)1700000000);
    if (url && (strchr(url, ' ') || strchr(url, '\n')))
        fuzz_fail("the query URL carries a raw space or newline: %s", url);
    free(url);
    free(prom_uptime_query(body, (unsigned)status));

    cJSON *trigger = cJSON_ParseWithLength(body, len);
    if (trigger) {
        struct prom_trigger t;
        char err[256];
        memset(err, 'x', sizeof(err));
        if (prom_trigger_parse(trigger, "spec.triggers[0]", "http://prom:9090", "Bearer x", &t, err,
                               sizeof(err)) == 0) {
            if (!t.server_address || !t.query || !t.uptime_filter || !t.headers)
                fuzz_fail("a trigger was accepted incomplete");
            for (char **h = t.headers; *h; h++)
                if (strpbrk(*h, "\r\n"))
                    fuzz_fail("a trigger header carries a line break: %s", *h);
            prom_trigger_clear(&t);
        } else if (!memchr(err, '\0', sizeof(err))) {
            fuzz_fail("prom_trigger_parse failed without a NUL-terminated message");
        }
        cJSON_Delete(trigger);
    }
    free(body);
    return 0;
}
