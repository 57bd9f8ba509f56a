/*
 * pathprobe_send: sends data-path probes with controller/pathprobe for the integration tests
 * (tests/integration/test_datapath_probe.py), as the leader does before it removes a last
 * replica.
 *
 *   pathprobe_send IP PORT [--nonce NONCE] [--timeout-ms MS] [--count N]
 *
 * Sends N probes (default 1) to IP:PORT at once, each with its own fresh nonce
 * (pathprobe_nonce_new) unless --nonce gives the one they all carry. Prints one JSON line per
 * answer on stdout, in the order they come:
 *   {"nonce": "...", "result": "<pathprobe_result_name>", "status": 204 | 0, "detail": "..."}
 * Exits 0 once every answer is printed; 2 on a usage error; 3 when a probe cannot start
 * (pathprobe_send refused its arguments: the line {"result": "NotStarted"} says so).
 */
#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/kube/http.h"
#include "controller/pathprobe.h"

struct run {
    struct event_base *base;
    int pending;
};

struct one {
    struct run *run;
    char nonce[PATHPROBE_NONCE_MAX + 1];
};

static void emit(const char *nonce, const char *result, long status, const char *detail)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "nonce", nonce);
    cJSON_AddStringToObject(o, "result", result);
    cJSON_AddNumberToObject(o, "status", (double)status);
    cJSON_AddStringToObject(o, "detail", detail);
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s ? s : "{}");
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

static void on_answer(const struct pathprobe_answer *a, void *arg)
{
    struct one *one = arg;
    emit(one->nonce, pathprobe_result_name(a->result), a->status, a->detail);
    if (--one->run->pending == 0)
        event_base_loopbreak(one->run->base);
    free(one);
}

static int usage(void)
{
    fprintf(stderr,
            "usage: pathprobe_send IP PORT [--nonce NONCE] [--timeout-ms MS] [--count N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return usage();
    const char *ip = argv[1];
    char *end;
    unsigned long port = strtoul(argv[2], &end, 10);
    if (!*argv[2] || *end)
        return usage();
    const char *nonce = NULL;
    long timeout_ms = 0;
    unsigned long count = 1;
    if ((argc - 3) % 2 != 0)
        return usage(); /* every option takes a value */
    for (int i = 3; i < argc; i += 2) {
        const char *v = argv[i + 1];
        if (!strcmp(argv[i], "--nonce")) {
            nonce = v;
        } else if (!strcmp(argv[i], "--timeout-ms")) {
            timeout_ms = strtol(v, &end, 10);
            if (!*v || *end)
                return usage();
        } else if (!strcmp(argv[i], "--count")) {
            count = strtoul(v, &end, 10);
            if (!*v || *end || count == 0 || count > 1000)
                return usage();
        } else {
            return usage();
        }
    }
    struct run run = {.base = event_base_new()};
    struct http_client *http = run.base ? http_client_new(run.base) : NULL;
    if (!http) {
        fprintf(stderr, "cannot create the event loop or the HTTP client\n");
        return 3;
    }
    int rc = 0;
    for (unsigned long k = 0; k < count && rc == 0; k++) {
        struct one *one = calloc(1, sizeof(*one));
        if (!one) {
            rc = 3;
            break;
        }
        one->run = &run;
        if (nonce)
            snprintf(one->nonce, sizeof(one->nonce), "%s", nonce);
        else if (pathprobe_nonce_new(one->nonce, sizeof(one->nonce)) < 0)
            rc = 3;
        run.pending++;
        if (rc || !pathprobe_send(http, ip, (unsigned)port, nonce ? nonce : one->nonce, timeout_ms,
                                  on_answer, one)) {
            emit(nonce ? nonce : one->nonce, "NotStarted", 0, "pathprobe_send refused to start");
            run.pending--;
            free(one);
            rc = 3;
        }
    }
    if (run.pending > 0) /* even after a failed start: the started ones answer and free */
        event_base_dispatch(run.base);
    http_client_free(http);
    event_base_free(run.base);
    return rc;
}
