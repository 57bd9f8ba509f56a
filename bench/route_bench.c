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
 * With --wakes K instead, K services one after another (distinct while K <= N; at N < K each is
 * woken again, as a new cold start) get one HTTP request each on their resolver port, held
 * (no ready endpoint), and the time is taken from the data plane's held timestamp (the one the
 * controller's wake_to_scale_seconds starts from), and from the request's last byte written, to
 * the moment the fake transport takes the wake's first /scale call (the read: the replica does
 * not watch the targets). Every replica wakes, leader or not. The bench then answers that read
 * (0 replicas) and the patch that follows (1), so each wake completes, and the Event that follows
 * (with what it sent); the ElastiService status write stays pending (one in flight per
 * ElastiService, later ones wait behind it; wakes have a client of their own).
 *
 * Listening sockets are real (one per resolver port, on --bind, loopback only).
 *
 * Output: a line per phase, and as the last line one JSON object: count, workers, updates,
 * startup_ms, route_update_p50_ms, route_update_p99_ms, route_update_max_ms, rss_mb,
 * services_built_per_update (from holdfast_route_services_built_total, when the build
 * reports it); with --wakes: count, workers, wakes, startup_ms, wake_to_scale_sent_p50_ms,
 * _p99_ms, _max_ms (from the held timestamp), written_to_scale_sent_p50_ms, _p99_ms, _max_ms,
 * rss_mb.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <limits.h>
#include <malloc.h>
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
#include "controller/escached.h"
#include "controller/lean.h"
#include "controller/service.h"
#include "controller/slices.h"
#include "resolver/conn.h"
#include "resolver/worker.h"
#include "tests/fuzz/fake_cluster.h"
#include "tests/fuzz/fake_http.h"

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

/* Bytes the heap hands out now (malloc'd and not freed), in MiB. */
static double heap_mb(void)
{
    struct mallinfo2 mi = mallinfo2();
    return (double)(mi.uordblks + mi.hblkhd) / (1024.0 * 1024.0);
}

/* ---- --cache-bytes: what one cached object costs ---- */

/* cJSON's allocations, counted with malloc's own size and its 8-byte chunk header. */
static size_t hook_bytes, hook_allocs;

static void *count_malloc(size_t n)
{
    void *p = malloc(n);
    if (p) {
        hook_bytes += malloc_usable_size(p) + 8;
        hook_allocs++;
    }
    return p;
}

static void count_free(void *p)
{
    if (p) {
        hook_bytes -= malloc_usable_size(p) + 8;
        hook_allocs--;
    }
    free(p);
}

/* Bytes and allocations of one decoded object of each kind, as decoded, after the informer's
 * transform, and as cached (the compact structs the informers keep: malloc's size of the one
 * allocation plus its header), for the synthetic objects and for them as an API server sends
 * them. */
static void cache_bytes(void)
{
    static const struct {
        const char *resource;
        void (*transform)(cJSON *);
    } kinds[] = {{"elastiservices", lean_elastiservice},
                 {"services", lean_service},
                 {"endpointslices", lean_endpointslice}};
    cJSON_InitHooks(&(cJSON_Hooks){count_malloc, count_free});
    for (int full = 0; full < 2; full++) {
        fake_cluster_full_objects(full);
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            char *text = fake_cluster_object_json(kinds[k].resource, 1234);
            size_t b0 = hook_bytes, a0 = hook_allocs;
            cJSON *o = cJSON_Parse(text);
            if (!o)
                die("%s", "a synthetic object does not parse");
            size_t decoded = hook_bytes - b0, decoded_allocs = hook_allocs - a0;
            kinds[k].transform(o);
            size_t kept = hook_bytes - b0, kept_allocs = hook_allocs - a0;
            size_t stored = 0, stored_allocs = 0;
            /* each kind is cached compact, one allocation each */
            if (k == 0) {
                char err[256];
                struct es_cached *ec = es_cached_decode(o, err, sizeof(err));
                if (!ec)
                    die("%s", err);
                stored = malloc_usable_size(ec) + 8;
                stored_allocs = 1;
                es_cached_free(ec);
            }
            if (k == 1) {
                char err[256];
                struct service_cached *sc = service_decode(o, err, sizeof(err));
                if (!sc)
                    die("%s", err);
                stored = malloc_usable_size(sc) + 8;
                stored_allocs = 1;
                service_cached_free(sc);
            }
            if (k == 2) {
                char err[256];
                struct slice_cached *sc = slices_decode(o, err, sizeof(err));
                if (!sc)
                    die("%s", err);
                stored = malloc_usable_size(sc) + 8;
                stored_allocs = 1;
                slices_cached_free(sc);
            }
            printf("{\"objects\":\"%s\",\"resource\":\"%s\",\"json_bytes\":%zu,"
                   "\"decoded_bytes\":%zu,\"decoded_allocs\":%zu,\"transformed_bytes\":%zu,"
                   "\"transformed_allocs\":%zu,\"cached_bytes\":%zu,\"cached_allocs\":%zu}\n",
                   full ? "full" : "synthetic", kinds[k].resource, strlen(text), decoded,
                   decoded_allocs, kept, kept_allocs, stored, stored_allocs);
            cJSON_Delete(o);
            free(text);
        }
    }
    fake_cluster_full_objects(false);
    cJSON_InitHooks(NULL);
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

/* ---- --wakes: a held request -> the wake's scale call sent ---- */

/* The first /scale call started for the service being woken, timed as the fake transport
 * takes it (inside http_request_start, on the control thread). */
static char scale_needle[64];
static uint64_t scale_sent_ns;

static void on_call_start(const char *what, const char *body, void *arg)
{
    (void)body;
    (void)arg;
    if (!scale_sent_ns && scale_needle[0] && strstr(what, scale_needle))
        scale_sent_ns = mono_ns();
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Answers the pending /scale calls of service i as an API server holding its Deployment at 0
 * would (the read: 0 replicas; the patch: scaled to 1), so each wake completes. */
static void answer_scale_calls(struct fake_cluster *fc, int i)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "/deployments/svc-%d/scale", i);
    for (int k = 0; k < 1000; k++) {
        fake_cluster_settle(fc);
        struct http_request *r = fake_http_pick(needle, strlen(needle));
        if (!r || !strstr(fake_http_what(r), needle))
            return;
        bool patch = strncmp(fake_http_what(r), "PATCH ", 6) == 0;
        char b[512];
        int n = snprintf(b, sizeof(b),
                         "{\"kind\":\"Scale\",\"apiVersion\":\"autoscaling/v1\",\"metadata\":{"
                         "\"name\":\"svc-%d\",\"namespace\":\"bench\",\"resourceVersion\":\"%d\"},"
                         "\"spec\":{%s},\"status\":{\"replicas\":%d,\"selector\":\"app=svc-%d\"}}",
                         i, 2 + k, patch ? "\"replicas\":1" : "", patch ? 1 : 0, i);
        fake_http_answer(r, 200, b, (size_t)n, false, false);
    }
}

/* Answers the pending Event writes (each with what it sent), so the recorder's writes in flight
 * do not pile up to its bound (it drops Events past it). */
static void answer_events(struct fake_cluster *fc)
{
    static const char needle[] = "/namespaces/bench/events";
    for (int k = 0; k < 1000; k++) {
        fake_cluster_settle(fc);
        struct http_request *r = fake_http_pick(needle, strlen(needle));
        if (!r || !strstr(fake_http_what(r), needle))
            return;
        bool post = strncmp(fake_http_what(r), "POST ", 5) == 0;
        char *body = strdup(fake_http_body(r));
        if (!body)
            die("%s", "out of memory");
        fake_http_answer(r, post ? 201 : 200, body, strlen(body), false, false);
        free(body);
    }
}

/*
 * K wakes, one service after another (distinct while K <= N): a TCP connection to the
 * service's resolver port, one HTTP request (held: no ready endpoint), and the time from the
 * data plane's held timestamp (svc_state.wake_started_ns, the one controller's
 * wake_to_scale_seconds starts from) and from the request's last byte written to the moment the
 * fake transport takes the wake's first /scale call. The control loop blocks in its own
 * event_base_loop meanwhile, as in production.
 */
static void run_wakes(struct fake_cluster *fc, struct dataplane *dp, struct event_base *base,
                      int count, int wakes, const char *bind, int workers, double startup_ms)
{
    double *held = calloc((size_t)wakes, sizeof(*held));
    double *written = calloc((size_t)wakes, sizeof(*written));
    struct event *guard = event_new(base, -1, EV_PERSIST, on_guard, NULL);
    if (!held || !written || !guard)
        die("%s", "out of memory");
    /* bounds each blocking loop turn: the loop wakes at least every 50 ms */
    event_add(guard, &(struct timeval){0, 50000});
    fake_http_on_start(on_call_start, NULL);
    uint64_t deadline = mono_ns() + 60ull * 1000000000ull; /* bounded: 60 s of wakes at most */
    int done = 0;
    for (; done < wakes && mono_ns() < deadline; done++) {
        int i = (int)(((unsigned)done * 7919u) % (unsigned)count);
        char name[32];
        snprintf(name, sizeof(name), "svc-%d", i);
        struct svc_state *svc = svc_registry_get(&dp->registry, "bench", name);
        if (!svc)
            die("%s", "out of memory");
        /* a cold start of its own each time (at N < K a service is woken more than once) */
        atomic_store(&svc->wake_started_ns, 0);
        snprintf(scale_needle, sizeof(scale_needle), "/deployments/%s/scale", name);
        scale_sent_ns = 0;

        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(PORT_BASE + i)};
        inet_pton(AF_INET, bind, &sa.sin_addr); /* checked by main */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            die("connecting to %s:%d: %s", bind, PORT_BASE + i, strerror(errno));
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        char req[128];
        int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: svc-%d.bench\r\n\r\n", i);
        if (send(fd, req, (size_t)n, 0) != n)
            die("sending to %s:%d: %s", bind, PORT_BASE + i, strerror(errno));
        uint64_t sent = mono_ns();
        while (!scale_sent_ns && mono_ns() - sent < 5000000000ull)
            event_base_loop(base, EVLOOP_ONCE);
        if (!scale_sent_ns)
            die("no scale call for %s within 5 s of its held request", name);
        int64_t at = atomic_load(&svc->wake_started_ns);
        if (at <= 0 || (uint64_t)at > scale_sent_ns)
            die("%s: no held timestamp before its scale call", name);
        held[done] = (double)(scale_sent_ns - (uint64_t)at) / 1e6;
        written[done] = (double)(scale_sent_ns - sent) / 1e6;
        answer_scale_calls(fc, i);
        answer_events(fc);
        close(fd);
        /* the next connection of this service must be a new burst: wait until the data plane
         * let this one go (bounded) */
        for (int k = 0; k < 100000 && atomic_load(&svc->held_conns) > 0; k++) {
            fake_cluster_settle(fc);
            nanosleep(&(struct timespec){0, 20000}, NULL);
        }
        svc_state_unref(svc);
    }
    fake_http_on_start(NULL, NULL);
    event_free(guard);
    if (!done)
        die("%s", "no wake within the time bound");
    qsort(held, (size_t)done, sizeof(*held), cmp_double);
    qsort(written, (size_t)done, sizeof(*written), cmp_double);
    double rss = rss_mb();
    printf("count=%d: %d wakes, first held request -> scale call sent: p50 %.3f ms, p99 %.3f ms, "
           "max %.3f ms (from the request's last byte written: p50 %.3f ms, p99 %.3f ms, max "
           "%.3f ms); rss %.1f MiB\n",
           count, done, pct(held, (size_t)done, 0.5), pct(held, (size_t)done, 0.99), held[done - 1],
           pct(written, (size_t)done, 0.5), pct(written, (size_t)done, 0.99), written[done - 1],
           rss);
    printf("{\"count\":%d,\"workers\":%d,\"wakes\":%d,\"startup_ms\":%.1f,"
           "\"wake_to_scale_sent_p50_ms\":%.3f,\"wake_to_scale_sent_p99_ms\":%.3f,"
           "\"wake_to_scale_sent_max_ms\":%.3f,\"written_to_scale_sent_p50_ms\":%.3f,"
           "\"written_to_scale_sent_p99_ms\":%.3f,\"written_to_scale_sent_max_ms\":%.3f,"
           "\"rss_mb\":%.1f}\n",
           count, workers, done, startup_ms, pct(held, (size_t)done, 0.5),
           pct(held, (size_t)done, 0.99), held[done - 1], pct(written, (size_t)done, 0.5),
           pct(written, (size_t)done, 0.99), written[done - 1], rss);
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: route_bench --count N [--updates K | --wakes K] [--workers W] [--bind IP] "
            "[--full-objects]\n       route_bench --cache-bytes\n"
            "  N ElastiServices (1..20000), K one-service updates (default 200), W data "
            "plane workers (default 2),\n  --wakes K: "
            "instead of updates, K held requests, each to the next service, timed to their "
            "wake's scale call,\n  listeners on IP (default 127.0.13.1), "
            "--full-objects: the objects as an API server sends them\n  "
            "(managedFields, last-applied-configuration, ...)\n  --cache-bytes: the bytes one "
            "decoded object of each kind takes, before and after its informer's "
            "transform\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int count = 0, updates = 200, workers = 2, wakes = 0;
    const char *bind = "127.0.13.1";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--cache-bytes") == 0) {
            cache_bytes();
            return 0;
        }
        if (strcmp(a, "--full-objects") == 0) {
            fake_cluster_full_objects(true);
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (strcmp(a, "--count") == 0)
            count = atoi(v);
        else if (strcmp(a, "--updates") == 0)
            updates = atoi(v);
        else if (strcmp(a, "--wakes") == 0)
            wakes = atoi(v);
        else if (strcmp(a, "--workers") == 0)
            workers = atoi(v);
        else if (strcmp(a, "--bind") == 0)
            bind = v;
        else
            usage();
        i++;
    }
    if (count < 1 || count > 20000 || updates < 1 || updates > 100000 || wakes < 0 ||
        wakes > 100000 || workers < 1 || workers > 64)
        usage();
    struct in_addr bind_ip;
    if (wakes > 0 && inet_pton(AF_INET, bind, &bind_ip) != 1)
        die("--bind %s: not an IPv4 address (--wakes connects to it)", bind);
    log_set_level(LOG_WARN);

    struct dp_limits limits;
    dp_limits_default(&limits);
    struct dataplane *dp = dataplane_new(workers, &limits);
    struct event_base *base = event_base_new();
    char err[512] = "";
    if (!dp || !base)
        die("%s", "out of memory");
    if (dataplane_start(dp, err, sizeof(err)) < 0)
        die("%s", err);
    uint64_t t0 = mono_ns();
    struct fake_cluster *fc =
        fake_cluster_start(base, dp, count, bind, PORT_BASE, err, sizeof(err));
    if (!fc)
        die("%s", err);
    double startup_ms = (double)(mono_ns() - t0) / 1e6;
    printf("count=%d workers=%d: lists answered, routes applied by every worker in %.1f ms, "
           "rss %.1f MiB\n",
           count, workers, startup_ms, rss_mb());
    fflush(stdout);
    if (wakes > 0) {
        run_wakes(fc, dp, base, count, wakes, bind, workers, startup_ms);
        _exit(0);
    }

    double *lat = calloc((size_t)updates, sizeof(*lat));
    double *pub = calloc((size_t)updates, sizeof(*pub)); /* up to the publish, this thread */
    bool *ready = calloc((size_t)count, sizeof(*ready));
    if (!lat || !pub || !ready)
        die("%s", "out of memory");
    double built_before = fake_cluster_services_built(fc);
    uint64_t deadline = mono_ns() + 50ull * 1000000000ull; /* bounded: 50 s of updates at most */
    int done = 0;
    for (; done < updates && mono_ns() < deadline; done++) {
        int i = (int)(((unsigned)done * 7919u) % (unsigned)count);
        ready[i] = !ready[i];
        uint64_t gen = fake_cluster_generation(dp);
        uint64_t start = mono_ns();
        fake_cluster_set_ready(fc, i, ready[i]);
        uint64_t now = start;
        while (fake_cluster_generation(dp) <= gen && (now = mono_ns()) - start < 5000000000ull)
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        uint64_t want = fake_cluster_generation(dp);
        pub[done] = (double)(mono_ns() - start) / 1e6;
        /* Polled with short sleeps, not a spin: the workers need the CPUs (2 on the machine
         * this was written on), as they have them in production. */
        while (!fake_cluster_applied(dp, want) && (now = mono_ns()) - start < 5000000000ull)
            nanosleep(&(struct timespec){0, 2000}, NULL);
        now = mono_ns();
        if (want <= gen || !fake_cluster_applied(dp, want))
            die("%s", "an update was not applied within 5 s");
        lat[done] = (double)(now - start) / 1e6;
        fake_cluster_settle(fc);
    }
    double built_after = fake_cluster_services_built(fc);
    qsort(lat, (size_t)done, sizeof(*lat), cmp_double);
    qsort(pub, (size_t)done, sizeof(*pub), cmp_double);
    double p50 = pct(lat, (size_t)done, 0.50), p99 = pct(lat, (size_t)done, 0.99);
    double rss = rss_mb();
    printf("count=%d: %d one-service updates, route update applied by every worker: "
           "p50 %.3f ms, p99 %.3f ms, max %.3f ms (of which the informer, build and publish "
           "on the control thread: p50 %.3f ms, p99 %.3f ms); rss %.1f MiB\n",
           count, done, p50, p99, lat[done - 1], pct(pub, (size_t)done, 0.5),
           pct(pub, (size_t)done, 0.99), rss);
    char built[64] = "null";
    if (built_before >= 0 && built_after >= 0)
        snprintf(built, sizeof(built), "%.2f", (built_after - built_before) / done);
    printf("{\"count\":%d,\"workers\":%d,\"updates\":%d,\"startup_ms\":%.1f,"
           "\"route_update_p50_ms\":%.3f,\"route_update_p99_ms\":%.3f,"
           "\"route_update_max_ms\":%.3f,\"publish_p50_ms\":%.3f,\"publish_p99_ms\":%.3f,"
           "\"rss_mb\":%.1f,\"heap_mb\":%.1f,\"services_built_per_update\":%s}\n",
           count, workers, done, startup_ms, p50, p99, lat[done - 1], pct(pub, (size_t)done, 0.5),
           pct(pub, (size_t)done, 0.99), rss, heap_mb(), built);
    fflush(stdout);
    /* Exit without the orderly shutdown: the point was measured, and the process ends. */
    _exit(0);
}
