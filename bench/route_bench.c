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

static void usage(void)
{
    fprintf(stderr,
            "usage: route_bench --count N [--updates K] [--workers W] [--bind IP] "
            "[--full-objects]\n       route_bench --cache-bytes\n"
            "  N ElastiServices (1..20000), K one-service updates (default 200), W data "
            "plane workers (default 2),\n  listeners on IP (default 127.0.13.1), "
            "--full-objects: the objects as an API server sends them\n  "
            "(managedFields, last-applied-configuration, ...)\n  --cache-bytes: the bytes one "
            "decoded object of each kind takes, before and after its informer's "
            "transform\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int count = 0, updates = 200, workers = 2;
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

    struct config_limits limits;
    config_limits_default(&limits);
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
