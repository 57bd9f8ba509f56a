/*
 * kube_api_fuzz: the control plane fed by a scripted API server. controller_start runs as in
 * production (informers on ElastiServices, Services, EndpointSlices and the resolver's own
 * slices, the leader role, Events, /scale reads and wakes, Prometheus triggers) over
 * fake_http.c instead of libcurl; each input is a conversation: which pending request gets
 * which answer. Everything the API server and Prometheus send reaches the code that decodes it
 * (kube.c's responses, Status errors and watch lines; informer.c's lists, pages, events and
 * relists; controller.c's spec and status parsing and what it does with them; target.c's
 * /scale, wake and diagnosis reads; slices.c; events.c; prom.c).
 *
 * Input: records separated by a line "---". A record is
 *   SELECTOR
 *   STATUS[+][!]
 *   BODY...
 * SELECTOR picks the oldest pending request whose "METHOD URL" contains it (the oldest of all
 * when none does; the record is skipped when nothing is pending). STATUS is the HTTP status
 * (0: no response); "+" keeps a watch stream open after its lines, "!" ends it as a dropped
 * connection. A 2xx answer to a watch hands BODY's lines over as events. Two selectors act
 * instead of answering:
 *   !tick          every pending timer fires now (poll rounds, retries, backoffs, Event flush)
 *   !wake NS/NAME  the data plane asks for a wake of NS/NAME (as a held request does)
 * Between records the control thread's loop runs until it is idle.
 *
 * Nothing leaves the process: HTTP is scripted, and bind() is wrapped to fail (EADDRNOTAVAIL),
 * so the resolver ports the controller opens for the fuzzed ElastiServices never exist.
 *
 * At the end the calls still in flight fail as if the API server had gone (the drain at
 * shutdown waits for them too), then the controller is freed.
 *
 * Checks: no sanitizer report, no leak, and every request is gone once controller_free returns.
 */
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "controller/controller.h"
#include "fake_http.h"
#include "fuzz_util.h"
#include "resolver/worker.h"

#define MAX_RECORDS 200
#define MAX_TURNS 32
#define MAX_TIMERS 256

int __wrap_bind(int fd, const struct sockaddr *addr, socklen_t len);

/* No listening socket is ever bound by this target. */
int __wrap_bind(int fd, const struct sockaddr *addr, socklen_t len)
{
    errno = EADDRNOTAVAIL;
    return -1;
}

static char dir[PATH_MAX];
static char kubeconfig[PATH_MAX];

static void cleanup(void)
{
    unlink(kubeconfig);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_logging();
    const char *trace = getenv("FUZZ_TRACE");
    fake_http_trace(trace && *trace == '1');
    char tmpl[] = "/tmp/holdfast-kube-api-fuzz.XXXXXX";
    if (!mkdtemp(tmpl))
        fuzz_fail("cannot make a temporary directory: %s", strerror(errno));
    snprintf(dir, sizeof(dir), "%s", tmpl);
    snprintf(kubeconfig, sizeof(kubeconfig), "%s/kubeconfig", dir);
    atexit(cleanup);
    FILE *f = fopen(kubeconfig, "w");
    if (!f)
        fuzz_fail("cannot write %s: %s", kubeconfig, strerror(errno));
    fputs("clusters:\n- name: c\n  cluster: {server: 'https://kube.invalid:6443'}\n"
          "contexts:\n- name: x\n  context: {cluster: c, user: u, namespace: default}\n"
          "current-context: x\n"
          "users:\n- name: u\n  user: {token: fuzz}\n",
          f);
    fclose(f);
    return 0;
}

/* ---- timers ---- */

struct timers {
    struct event *ev[MAX_TIMERS];
    size_t n;
};

static int collect_timer(const struct event_base *base, const struct event *ev, void *arg)
{
    struct timers *t = arg;
    if (event_get_fd(ev) == -1 && t->n < MAX_TIMERS)
        t->ev[t->n++] = (struct event *)ev;
    return 0;
}

/* Every timer that is pending fires now, as if its time had come. */
static void fire_timers(struct event_base *base)
{
    struct timers t = {.n = 0};
    event_base_foreach_event(base, collect_timer, &t);
    for (size_t i = 0; i < t.n; i++) {
        if (event_pending(t.ev[i], EV_TIMEOUT, NULL))
            event_active(t.ev[i], EV_TIMEOUT, 0);
    }
}

/* Runs the loop until nothing is active (bounded). */
static void settle(struct event_base *base)
{
    for (int i = 0; i < MAX_TURNS; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) == 0)
            break;
    }
}

/* ---- records ---- */

static void wake(struct dataplane *dp, const uint8_t *what, size_t len)
{
    const uint8_t *slash = memchr(what, '/', len);
    if (!slash)
        return;
    char *ns = fuzz_strndup(what, (size_t)(slash - what));
    char *name = fuzz_strndup(slash + 1, len - (size_t)(slash - what) - 1);
    struct svc_state *svc = svc_registry_get(&dp->registry, ns, name);
    if (svc) {
        atomic_store(&svc->held_conns, 1); /* as if a request were held: wake retries go on */
        wakeq_push_wake(&dp->wakeq, svc);
        svc_state_unref(svc);
    }
    free(ns);
    free(name);
}

static void answer(const uint8_t *selector, size_t sel_len, const uint8_t *status_line,
                   size_t status_len, const uint8_t *body, size_t body_len)
{
    struct http_request *r = fake_http_pick((const char *)selector, sel_len);
    if (!r)
        return;
    char *st = fuzz_strndup(status_line, status_len);
    char *end;
    long status = strtol(st, &end, 10);
    bool keep_open = strchr(end, '+') != NULL;
    bool broken = strchr(end, '!') != NULL;
    free(st);
    fake_http_answer(r, status, (const char *)body, body_len, keep_open, broken);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dp_limits limits;
    dp_limits_default(&limits);
    struct dataplane *dp = dataplane_new(1, &limits); /* first: it turns libevent's locks on */
    struct event_base *base = event_base_new();
    if (!base || !dp)
        abort();
    struct controller_opts opts = {
        .kubeconfig = kubeconfig,
        .resolver_service = "holdfast",
        .resolver_namespace = "holdfast-system",
        .pod_name = "holdfast-0",
        .pod_ip = "10.0.0.7",
        .node_name = "node-a",
        .bind_address = "127.0.0.1",
        .port_min = 20000,
        .port_max = 20009,
        .shared_port = 8012,
        .polling_interval_ms = 1000,
        .api_qps = 1e9,
        .api_burst = 1000000,
        .prometheus_address = "http://prometheus:9090",
        .leader_elect = false,
    };
    char err[512] = "";
    struct controller *c = controller_start(base, dp, &opts, err, sizeof(err));
    if (!c)
        fuzz_fail("controller_start: %s", err);
    settle(base);

    struct fuzz_reader rd = {data, size, 0};
    const uint8_t *rec;
    size_t rec_len;
    for (int n = 0; n < MAX_RECORDS && fuzz_next_until(&rd, "\n---\n", &rec, &rec_len); n++) {
        struct fuzz_reader rr = {rec, rec_len, 0};
        const uint8_t *sel, *status = (const uint8_t *)"200";
        size_t sel_len, status_len = 3;
        if (!fuzz_next_line(&rr, &sel, &sel_len))
            continue;
        if (sel_len == 5 && memcmp(sel, "!tick", 5) == 0) {
            fire_timers(base);
        } else if (sel_len > 6 && memcmp(sel, "!wake ", 6) == 0) {
            wake(dp, sel + 6, sel_len - 6);
        } else {
            fuzz_next_line(&rr, &status, &status_len);
            size_t body_len;
            const uint8_t *body = fuzz_rest(&rr, &body_len);
            answer(sel, sel_len, status, status_len, body, body_len);
        }
        settle(base);
    }

    /* Shut down as holdfast does: the drain lets every API call but the watches finish (here:
     * fail, as with the API server gone), then the controller is freed. */
    struct http_request *r;
    for (int i = 0; i < 1000 && (r = fake_http_pick_plain()); i++) {
        fake_http_answer(r, 0, "", 0, false, false);
        settle(base);
    }
    controller_free(c);
    if (fake_http_pending() != 0)
        fuzz_fail("%zu requests outlived the controller", fake_http_pending());
    dataplane_free(dp);
    event_base_free(base);
    return 0;
}
