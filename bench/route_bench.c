/*
 * route_bench: route-update latency and RSS of the control plane's route building at N
 * ElastiServices, without an API server (bench/route runs it).
 *
 * The real controller (controller_start) runs on this thread over tests/fuzz/fake_http.c
 * instead of libcurl, and the real data plane runs its workers. The bench answers the
 * informers' lists with N synthetic ElastiServices (mode proxy, one port each, resolver ports
 * allocated in status), their Services and their EndpointSlices (no ready endpoint: scaled to
 * zero), and keeps the watches open. The replica never leads (the Lease read is never
 * answered), so it only watches and publishes routes, as every replica does.
 *
 * Then, --updates times, one service's EndpointSlice changes through the watch (a ready
 * endpoint appears, or goes), and the time is taken from just before the watch line is handed
 * to the informer to the moment every worker has applied the snapshot that carries it: the
 * same informer -> cache -> route build -> publish -> worker apply path as production.
 *
 * Listening sockets are real (one per resolver port, on --bind, loopback only).
 *
 * Output: a line per phase, and as the last line one JSON object: count, workers, updates,
 * startup_ms, route_update_p50_ms, route_update_p99_ms, route_update_max_ms, rss_mb,
 * services_built_per_update (from holdfast_route_services_built_total, when the build
 * reports it).
 */
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "controller/controller.h"
#include "resolver/conn.h"
#include "resolver/worker.h"
#include "tests/fuzz/fake_http.h"

#define NS "bench"
#define PORT_BASE 40000

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "route_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

/* ---- growing text buffer ---- */

struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_add(struct buf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            die("%s", "vsnprintf failed");
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap ? b->cap * 2 : 65536;
        while (ncap < b->len + (size_t)n + 1)
            ncap *= 2;
        b->p = realloc(b->p, ncap);
        if (!b->p)
            die("%s", "out of memory");
        b->cap = ncap;
    }
}

/* ---- synthetic objects ---- */

static void es_json(struct buf *b, int i)
{
    buf_add(b,
            "{\"apiVersion\":\"elasti.truefoundry.com/v1alpha1\",\"kind\":\"ElastiService\","
            "\"metadata\":{\"name\":\"svc-%d\",\"namespace\":\"" NS "\",\"uid\":\"es-%d\","
            "\"resourceVersion\":\"1\",\"generation\":1,\"creationTimestamp\":"
            "\"2026-01-01T00:00:00Z\",\"finalizers\":[\"elasti.truefoundry.com/finalizer\"]},"
            "\"spec\":{\"service\":\"svc-%d\",\"minTargetReplicas\":1,\"cooldownPeriod\":300,"
            "\"scaleTargetRef\":{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
            "\"name\":\"svc-%d\"}},"
            "\"status\":{\"mode\":\"proxy\",\"observedGeneration\":1,\"ports\":[{\"name\":"
            "\"http\",\"port\":80,\"protocol\":\"TCP\",\"resolverPort\":%d}]}}",
            i, i, i, i, PORT_BASE + i);
}

static void svc_json(struct buf *b, int i)
{
    buf_add(b,
            "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"svc-%d\","
            "\"namespace\":\"" NS "\",\"uid\":\"svc-%d\",\"resourceVersion\":\"1\"},"
            "\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"10.96.%d.%d\",\"ports\":[{"
            "\"name\":\"http\",\"port\":80,\"protocol\":\"TCP\",\"targetPort\":8080}]}}",
            i, i, (i / 250) % 250, i % 250 + 1);
}

/* The EndpointSlice of service i, with a ready endpoint or none; rv its resourceVersion. */
static void slice_json(struct buf *b, int i, bool ready, unsigned rv)
{
    buf_add(b,
            "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\","
            "\"metadata\":{\"name\":\"svc-%d-abcde\",\"namespace\":\"" NS "\","
            "\"uid\":\"slice-%d\",\"resourceVersion\":\"%u\",\"labels\":{"
            "\"kubernetes.io/service-name\":\"svc-%d\",\"endpointslice.kubernetes.io/"
            "managed-by\":\"endpointslice-controller.k8s.io\"}},\"addressType\":\"IPv4\","
            "\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}],"
            "\"endpoints\":[",
            i, i, rv, i);
    if (ready)
        buf_add(b,
                "{\"addresses\":[\"10.244.%d.%d\"],\"conditions\":{\"ready\":true,"
                "\"serving\":true,\"terminating\":false}}",
                (i / 250) % 250, i % 250 + 1);
    buf_add(b, "]}");
}

typedef void (*obj_fn)(struct buf *b, int i);

static void slice_json_zero(struct buf *b, int i)
{
    slice_json(b, i, false, 1);
}

static char *list_json(const char *kind, int n, obj_fn fn, size_t *len)
{
    struct buf b = {0};
    buf_add(&b,
            "{\"kind\":\"%s\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"1\"},"
            "\"items\":[",
            kind);
    for (int i = 0; i < n; i++) {
        if (i)
            buf_add(&b, ",");
        fn(&b, i);
    }
    buf_add(&b, "]}");
    *len = b.len;
    return b.p;
}

/* ---- driving the loop ---- */

/* The pending request whose "METHOD URL" contains every needle (NULL-terminated), or NULL. */
static struct http_request *pending(const char *const *needles)
{
    struct http_request *r = fake_http_pick(needles[0], strlen(needles[0]));
    if (!r)
        return NULL;
    const char *what = fake_http_what(r);
    for (size_t i = 0; needles[i]; i++) {
        if (!strstr(what, needles[i]))
            return NULL;
    }
    return r;
}

static void settle(struct event_base *base)
{
    for (int i = 0; i < 64; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) == 0)
            break;
    }
}

/* Answers the list of `resource` with body (a watch follows and is returned). */
static struct http_request *answer_list(struct event_base *base, const char *resource,
                                        const char *body, size_t len)
{
    const char *list[] = {resource, "limit=", NULL};
    struct http_request *r = NULL;
    for (int i = 0; i < 1000 && !(r = pending(list)); i++)
        settle(base);
    if (!r)
        die("no list request for %s", resource);
    fake_http_answer(r, 200, body, len, false, false);
    settle(base);
    const char *watch[] = {resource, "watch=true", NULL};
    struct http_request *w = NULL;
    for (int i = 0; i < 1000 && !(w = pending(watch)); i++)
        settle(base);
    if (!w)
        die("no watch request for %s", resource);
    return w;
}

static bool all_applied(struct dataplane *dp, uint64_t gen)
{
    for (int i = 0; i < dp->nworkers; i++) {
        if (atomic_load(&dp->workers[i]->applied_generation) < gen)
            return false;
    }
    return true;
}

static uint64_t published_generation(struct dataplane *dp)
{
    pthread_mutex_lock(&dp->routes.mu);
    uint64_t g = dp->routes.generation;
    pthread_mutex_unlock(&dp->routes.mu);
    return g;
}

static double rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = 0;
    while (f && fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = strtod(line + 6, NULL);
    }
    if (f)
        fclose(f);
    return kb / 1024.0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

/* holdfast_route_services_built_total from the controller's metrics, or -1 when absent. */
static double services_built(struct controller *c)
{
    struct mtext out;
    mtext_init(&out);
    controller_metrics(&out, c);
    const char *key = "\nholdfast_route_services_built_total ";
    const char *at = out.data ? strstr(out.data, key) : NULL;
    double v = at ? strtod(at + strlen(key), NULL) : -1;
    mtext_free(&out);
    return v;
}

static void usage(void)
{
    fprintf(stderr, "usage: route_bench --count N [--updates K] [--workers W] [--bind IP]\n"
                    "  N ElastiServices (1..20000), K one-service updates (default 200), W data "
                    "plane workers (default 2),\n  listeners on IP (default 127.0.13.1)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int count = 0, updates = 200, workers = 2;
    const char *bind = "127.0.13.1";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (strcmp(a, "--count") == 0)
            count = atoi(v);
        else if (strcmp(a, "--updates") == 0)
            updates = atoi(v);
        else if (strcmp(a, "--workers") == 0)
            workers = atoi(v);
        else if (strcmp(a, "--bind") == 0)
            bind = v;
        else
            usage();
        i++;
    }
    if (count < 1 || count > 20000 || updates < 1 || updates > 100000 || workers < 1 ||
        workers > 64)
        usage();
    log_set_level(LOG_WARN);

    char dir[] = "/tmp/route-bench.XXXXXX";
    if (!mkdtemp(dir))
        die("cannot make a temporary directory: %s", strerror(errno));
    char kubeconfig[PATH_MAX];
    snprintf(kubeconfig, sizeof(kubeconfig), "%s/kubeconfig", dir);
    FILE *f = fopen(kubeconfig, "w");
    if (!f)
        die("cannot write %s", kubeconfig);
    fputs("clusters:\n- name: c\n  cluster: {server: 'https://kube.invalid:6443'}\n"
          "contexts:\n- name: x\n  context: {cluster: c, user: u, namespace: default}\n"
          "current-context: x\nusers:\n- name: u\n  user: {token: bench}\n",
          f);
    fclose(f);

    struct config_limits limits;
    config_limits_default(&limits);
    struct dataplane *dp = dataplane_new(workers, &limits);
    struct event_base *base = event_base_new();
    char err[512] = "";
    if (!dp || !base)
        die("%s", "out of memory");
    if (dataplane_start(dp, err, sizeof(err)) < 0)
        die("%s", err);
    struct controller_opts opts = {
        .kubeconfig = kubeconfig,
        .pod_name = "holdfast-bench",
        .pod_ip = "10.0.0.7",
        .bind_address = bind,
        .port_min = PORT_BASE,
        .port_max = PORT_BASE + 20000,
        .polling_interval_ms = 3600000,
        .api_qps = 1e9,
        .api_burst = 1000000,
        .leader_elect = true, /* the Lease is never answered: this replica only routes */
        .no_target_watch = true,
    };
    uint64_t t0 = mono_ns();
    struct controller *c = controller_start(base, dp, &opts, err, sizeof(err));
    unlink(kubeconfig);
    rmdir(dir);
    if (!c)
        die("controller_start: %s", err);
    settle(base);

    size_t len;
    char *body = list_json("ServiceList", count, svc_json, &len);
    answer_list(base, "/services?", body, len);
    free(body);
    body = list_json("EndpointSliceList", count, slice_json_zero, &len);
    struct http_request *slices_watch = answer_list(base, "/endpointslices?", body, len);
    free(body);
    body = list_json("ElastiServiceList", count, es_json, &len);
    answer_list(base, "/elastiservices?", body, len);
    free(body);
    for (int i = 0; i < 100000 && !(controller_ready(c) && dataplane_ready(dp)); i++) {
        settle(base);
        sched_yield();
    }
    if (!controller_ready(c) || !dataplane_ready(dp))
        die("%s", "the routes of the synthetic objects were never applied");
    double startup_ms = (double)(mono_ns() - t0) / 1e6;
    printf("count=%d workers=%d: lists answered, routes applied by every worker in %.1f ms, "
           "rss %.1f MiB\n",
           count, workers, startup_ms, rss_mb());
    fflush(stdout);

    double *lat = calloc((size_t)updates, sizeof(*lat));
    bool *ready = calloc((size_t)count, sizeof(*ready));
    if (!lat || !ready)
        die("%s", "out of memory");
    double built_before = services_built(c);
    unsigned rv = 2;
    uint64_t deadline = mono_ns() + 50ull * 1000000000ull; /* bounded: 50 s of updates at most */
    int done = 0;
    for (; done < updates && mono_ns() < deadline; done++) {
        int i = (int)(((unsigned)done * 7919u) % (unsigned)count);
        ready[i] = !ready[i];
        struct buf ev = {0};
        buf_add(&ev, "{\"type\":\"MODIFIED\",\"object\":");
        slice_json(&ev, i, ready[i], rv++);
        buf_add(&ev, "}\n");
        uint64_t gen = published_generation(dp);
        uint64_t start = mono_ns();
        fake_http_answer(slices_watch, 200, ev.p, ev.len, true, false);
        uint64_t now = start;
        while (published_generation(dp) <= gen && (now = mono_ns()) - start < 5000000000ull)
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        uint64_t want = published_generation(dp);
        while (!all_applied(dp, want) && (now = mono_ns()) - start < 5000000000ull)
            sched_yield();
        now = mono_ns();
        free(ev.p);
        if (want <= gen || !all_applied(dp, want))
            die("%s", "an update was not applied within 5 s");
        lat[done] = (double)(now - start) / 1e6;
        settle(base);
    }
    double built_after = services_built(c);
    qsort(lat, (size_t)done, sizeof(*lat), cmp_double);
    double p50 = pct(lat, (size_t)done, 0.50), p99 = pct(lat, (size_t)done, 0.99);
    double rss = rss_mb();
    printf("count=%d: %d one-service updates, route update applied by every worker: "
           "p50 %.3f ms, p99 %.3f ms, max %.3f ms; rss %.1f MiB\n",
           count, done, p50, p99, lat[done - 1], rss);
    char built[64] = "null";
    if (built_before >= 0 && built_after >= 0)
        snprintf(built, sizeof(built), "%.2f", (built_after - built_before) / done);
    printf("{\"count\":%d,\"workers\":%d,\"updates\":%d,\"startup_ms\":%.1f,"
           "\"route_update_p50_ms\":%.3f,\"route_update_p99_ms\":%.3f,"
           "\"route_update_max_ms\":%.3f,\"rss_mb\":%.1f,\"services_built_per_update\":%s}\n",
           count, workers, done, startup_ms, p50, p99, lat[done - 1], rss, built);
    fflush(stdout);
    /* Exit without the orderly shutdown: the point was measured, and the process ends. */
    _exit(0);
}
