/*
 * prom_bench: Prometheus queries per polling interval at N ElastiServices with D distinct
 * trigger queries on one Prometheus server (bench/prom runs it; issue 13's target: N=10,000,
 * D=100 -> at most 100 + one uptime check per interval).
 *
 * No API server and no Prometheus: the queries go to the scripted HTTP stand-in of tests/fuzz
 * (fake_http.h), which counts them, and every one is answered at once (one series, value 5:
 * above the threshold, so nothing scales down and every ElastiService is asked again next
 * interval). ElastiService i (`bench/svc-<i>`, one trigger, cooldown 900 s) asks query
 * `sum(rate(http_requests_total{app="app-<i mod D>"}[1m]))` and the uptime check, as the
 * controller's scale-down check does (controller.c, scale_down_check/eval_send):
 *
 *   --mode before: each check sends both with prom_query, as before issue 13's change;
 *   --mode after:  each check asks both of a prom_hub (the controller's, with the same rule:
 *                  share_ms = the polling interval, fresh after that ElastiService's previous
 *                  check had all its answers, at most --max-inflight per server).
 *
 * Checks come when the controller's poll would make them: all at the start (every
 * ElastiService is due at once after a start), then, after, each at its phase of the interval
 * (the same formula as controller.c's next_check_at: a hash of the name), before, one interval
 * less up to a tenth of jitter after the last (on_poll before the change). An ElastiService
 * whose check still waits for an answer is not checked again (es_check's busy rule).
 *
 * Output: one line per interval, then as the last line one JSON object: mode, count,
 * distinct, interval_ms, intervals, queries_first_interval (the start's), queries_per_interval
 * (the later ones), queries_per_interval_median, checks_per_interval_median.
 */
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/strmap.h"
#include "controller/kube/http.h"
#include "controller/prom.h"
#include "tests/fuzz/fake_http.h"

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct es {
    char key[64];
    struct prom_trigger t;
    uint64_t next_check_ms;
    uint64_t done_ms; /* when its last check had all its answers */
    int pending;      /* answers awaited */
};

static unsigned long checks;

static void on_answer(enum prom_status st, double value, const char *reason, void *arg)
{
    (void)st;
    (void)value;
    (void)reason;
    struct es *e = arg;
    if (--e->pending == 0)
        e->done_ms = mono_ms();
}

/* controller.c's next_check_at. */
static uint64_t next_check_at(const struct es *e, uint64_t now, unsigned interval)
{
    uint64_t phase = strmap_hash(STRMAP_SEED, e->key, strlen(e->key)) % interval;
    uint64_t at = now + interval;
    uint64_t past = (at + interval - phase) % interval;
    return past <= interval / 2 ? at - past : now + interval / 2;
}

static int cmp_ul(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

static void usage(void)
{
    fprintf(stderr, "usage: prom_bench --mode before|after [--count N] [--distinct D] "
                    "[--interval-ms MS] [--intervals K] [--max-inflight M]\n"
                    "  defaults: N 10000, D 100, MS 2000, K 5, M 8\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int count = 10000, distinct = 100, intervals = 5, max_inflight = 8;
    unsigned interval = 2000;
    const char *mode = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (strcmp(a, "--mode") == 0)
            mode = v;
        else if (strcmp(a, "--count") == 0)
            count = atoi(v);
        else if (strcmp(a, "--distinct") == 0)
            distinct = atoi(v);
        else if (strcmp(a, "--interval-ms") == 0)
            interval = (unsigned)atoi(v);
        else if (strcmp(a, "--intervals") == 0)
            intervals = atoi(v);
        else if (strcmp(a, "--max-inflight") == 0)
            max_inflight = atoi(v);
        else
            usage();
        i++;
    }
    bool after = mode && strcmp(mode, "after") == 0;
    if (!mode || (!after && strcmp(mode, "before") != 0) || count < 1 || count > 100000 ||
        distinct < 1 || distinct > count || interval < 100 || interval > 60000 || intervals < 1 ||
        intervals > 30 || max_inflight < 1 || max_inflight > 1000)
        usage();
    log_set_level(LOG_WARN);

    struct event_base *base = event_base_new();
    struct http_client *http = base ? http_client_new(base) : NULL;
    struct prom_hub *hub =
        http ? prom_hub_new(base, http, (unsigned)max_inflight, interval, NULL) : NULL;
    struct es *es = calloc((size_t)count, sizeof(*es));
    if (!hub || !es) {
        fprintf(stderr, "prom_bench: out of memory\n");
        return 1;
    }
    char q[128];
    for (int i = 0; i < count; i++) {
        snprintf(es[i].key, sizeof(es[i].key), "bench/svc-%d", i);
        snprintf(q, sizeof(q), "sum(rate(http_requests_total{app=\"app-%d\"}[1m]))", i % distinct);
        es[i].t.server_address = strdup("http://prometheus:9090");
        es[i].t.query = strdup(q);
        es[i].t.uptime_filter = strdup(PROM_DEFAULT_UPTIME_FILTER);
        es[i].t.headers = calloc(1, sizeof(char *));
        if (!es[i].t.server_address || !es[i].t.query || !es[i].t.uptime_filter ||
            !es[i].t.headers) {
            fprintf(stderr, "prom_bench: out of memory\n");
            return 1;
        }
    }
    const char *body = "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":"
                       "[{\"metric\":{},\"value\":[1700000000,\"5\"]}]}}";
    size_t body_len = strlen(body);

    unsigned long *queries = calloc((size_t)intervals + 1, sizeof(*queries));
    unsigned long *checks_in = calloc((size_t)intervals + 1, sizeof(*checks_in));
    uint64_t t0 = mono_ms(), end = t0 + (uint64_t)interval * (uint64_t)(intervals + 1);
    uint64_t now;
    while ((now = mono_ms()) < end) {
        size_t slot = (size_t)((now - t0) / interval);
        bool due = false;
        for (int i = 0; i < count; i++) {
            struct es *e = &es[i];
            if (e->next_check_ms > now)
                continue;
            due = true;
            e->next_check_ms = after
                                   ? next_check_at(e, now, interval)
                                   : now + interval - (uint64_t)(rand() % (int)(interval / 10 + 1));
            if (e->pending)
                continue; /* still evaluating */
            checks++;
            checks_in[slot]++;
            char *up = prom_uptime_query(e->t.uptime_filter, 900);
            for (int k = 0; k < 2; k++) {
                const char *query = k == 0 ? up : e->t.query;
                bool sent = after
                                ? prom_hub_ask(hub, &e->t, query, e->done_ms, on_answer, e) != NULL
                                : prom_query(http, &e->t, query, on_answer, e) != NULL;
                if (sent)
                    e->pending++;
            }
            free(up);
            /* Prometheus answers at once (few pending: the stand-in's answer is linear in them) */
            struct http_request *r;
            while ((r = fake_http_pick_plain()) != NULL) {
                queries[slot]++;
                fake_http_answer(r, 200, body, body_len, false, false);
            }
        }
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (!due) {
            struct timespec nap = {0, 500000};
            nanosleep(&nap, NULL);
        }
    }
    for (int s = 0; s <= intervals; s++)
        printf("interval %d: %lu checks, %lu queries%s\n", s, checks_in[s], queries[s],
               s == 0 ? " (the start: every ElastiService due at once)" : "");
    unsigned long *sorted = calloc((size_t)intervals, sizeof(*sorted));
    unsigned long *csorted = calloc((size_t)intervals, sizeof(*csorted));
    memcpy(sorted, queries + 1, (size_t)intervals * sizeof(*sorted));
    memcpy(csorted, checks_in + 1, (size_t)intervals * sizeof(*csorted));
    qsort(sorted, (size_t)intervals, sizeof(*sorted), cmp_ul);
    qsort(csorted, (size_t)intervals, sizeof(*csorted), cmp_ul);
    printf("{\"mode\":\"%s\",\"count\":%d,\"distinct\":%d,\"interval_ms\":%u,\"intervals\":%d,"
           "\"queries_first_interval\":%lu,\"queries_per_interval\":[",
           mode, count, distinct, interval, intervals, queries[0]);
    for (int s = 1; s <= intervals; s++)
        printf("%s%lu", s > 1 ? "," : "", queries[s]);
    printf("],\"queries_per_interval_median\":%lu,\"checks_per_interval_median\":%lu}\n",
           sorted[intervals / 2], csorted[intervals / 2]);
    prom_hub_free(hub);
    http_client_free(http);
    for (int i = 0; i < count; i++)
        prom_trigger_clear(&es[i].t);
    free(es);
    free(queries);
    free(checks_in);
    free(sorted);
    free(csorted);
    event_base_free(base);
    return 0;
}
