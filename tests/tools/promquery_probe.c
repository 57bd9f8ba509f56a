/*
 * promquery_probe: drives controller/prom against a real Prometheus for the integration tests
 * (tests/integration/test_prometheus_trigger.py).
 *
 *   promquery_probe --trigger JSON [--server URL] [--authorization VALUE]
 *                   [--query] [--uptime COOLDOWN_S]
 *
 * --trigger is one element of an ElastiService's spec.triggers, parsed by prom_trigger_parse;
 * --server and --authorization are the defaults `holdfast run` takes from its flags or from
 * PROMETHEUS_TRIGGER_SERVER_ADDRESS / PROMETHEUS_TRIGGER_AUTHORIZATION_HEADER. --query sends the
 * trigger's own query, --uptime its uptime query for that cooldown; both may be given (they run
 * concurrently on one event_base), and --query is implied when neither is.
 *
 * Output, one JSON line each, on stdout:
 *   {"kind":"trigger","server":"http://...","query":"...","threshold":0.5,
 *    "uptime_filter":"...","headers":["Name: value",...]}                    (first)
 *   {"kind":"query"|"uptime","query":"<PromQL sent>","status":"<prom_status_reason>",
 *    "value":0.2 (null unless QueryOK, or NaN),"reason":"..."}               (one per answer)
 * or, when the trigger does not parse, {"kind":"trigger","status":"InvalidTrigger","reason":...}
 * and exit 1. Exits 0 once every answer is printed; 2 on a usage error; 3 when a query cannot
 * start.
 */
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/kube/http.h"
#include "controller/prom.h"

struct probe {
    struct event_base *base;
    int pending; /* answers still expected */
};

/* One query in flight. */
struct ask {
    struct probe *p;
    const char *kind; /* "query" or "uptime" */
    char *query;      /* owned */
};

static void emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s ? s : "{}");
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

static void on_answer(enum prom_status st, double value, const char *reason, void *arg)
{
    struct ask *a = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", a->kind);
    cJSON_AddStringToObject(o, "query", a->query);
    cJSON_AddStringToObject(o, "status", prom_status_reason(st));
    if (st == PROM_OK)
        cJSON_AddNumberToObject(o, "value", value); /* cJSON writes NaN as null */
    else
        cJSON_AddNullToObject(o, "value");
    cJSON_AddStringToObject(o, "reason", reason);
    emit(o);
    if (--a->p->pending == 0)
        event_base_loopbreak(a->p->base);
    free(a->query);
    free(a);
}

static void emit_trigger(const struct prom_trigger *t)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "kind", "trigger");
    cJSON_AddStringToObject(o, "server", t->server_address);
    cJSON_AddStringToObject(o, "query", t->query);
    cJSON_AddNumberToObject(o, "threshold", t->threshold);
    cJSON_AddStringToObject(o, "uptime_filter", t->uptime_filter);
    cJSON *h = cJSON_AddArrayToObject(o, "headers");
    for (char **line = t->headers; line && *line; line++)
        cJSON_AddItemToArray(h, cJSON_CreateString(*line));
    emit(o);
}

/* Starts one query; takes ownership of `query`. Returns 0, or -1 when it cannot start. */
static int ask(struct probe *p, struct http_client *http, const struct prom_trigger *t,
               const char *kind, char *query)
{
    struct ask *a = calloc(1, sizeof(*a));
    if (!a || !query) {
        free(a);
        free(query);
        return -1;
    }
    a->p = p;
    a->kind = kind;
    a->query = query;
    p->pending++;
    if (!prom_query(http, t, query, on_answer, a)) {
        p->pending--;
        free(a->query);
        free(a);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *trigger_json = NULL, *server = NULL, *authorization = NULL;
    bool want_query = false, want_uptime = false;
    unsigned long cooldown = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--query")) {
            want_query = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "%s needs a value (or is unknown)\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--trigger")) {
            trigger_json = v;
        } else if (!strcmp(a, "--server")) {
            server = v;
        } else if (!strcmp(a, "--authorization")) {
            authorization = v;
        } else if (!strcmp(a, "--uptime")) {
            char *end;
            cooldown = strtoul(v, &end, 10);
            if (!*v || *end || cooldown > 1000000000UL) {
                fprintf(stderr, "--uptime: \"%s\" is not a number of seconds\n", v);
                return 2;
            }
            want_uptime = true;
        } else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (!trigger_json) {
        fprintf(stderr, "usage: promquery_probe --trigger JSON [--server URL] "
                        "[--authorization VALUE] [--query] [--uptime COOLDOWN_S]\n");
        return 2;
    }
    if (!want_uptime)
        want_query = true;

    cJSON *json = cJSON_Parse(trigger_json);
    if (!json) {
        fprintf(stderr, "--trigger is not JSON\n");
        return 2;
    }
    struct prom_trigger t;
    char err[512];
    int rc =
        prom_trigger_parse(json, "spec.triggers[0]", server, authorization, &t, err, sizeof(err));
    cJSON_Delete(json);
    if (rc != 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "kind", "trigger");
        cJSON_AddStringToObject(o, "status", "InvalidTrigger");
        cJSON_AddStringToObject(o, "reason", err);
        emit(o);
        return 1;
    }
    emit_trigger(&t);

    struct probe p = {.base = event_base_new()};
    struct http_client *http = p.base ? http_client_new(p.base) : NULL;
    if (!http) {
        fprintf(stderr, "cannot create the event loop or the HTTP client\n");
        prom_trigger_clear(&t);
        return 3;
    }
    rc = 0;
    if (want_query && ask(&p, http, &t, "query", strdup(t.query)) < 0)
        rc = 3;
    if (rc == 0 && want_uptime &&
        ask(&p, http, &t, "uptime", prom_uptime_query(t.uptime_filter, (unsigned)cooldown)) < 0)
        rc = 3;
    if (rc != 0)
        fprintf(stderr, "cannot start a query\n");
    if (p.pending > 0) /* even after a failed start: let the started one answer and free itself */
        event_base_dispatch(p.base);
    http_client_free(http);
    event_base_free(p.base);
    prom_trigger_clear(&t);
    return rc;
}
