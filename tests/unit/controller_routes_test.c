/*
 * controller routes: a change to one service builds one route, however many services there
 * are, and the workers apply it; the routes of the others are shared with the snapshot before.
 * The work is counted (holdfast_route_services_built_total), not timed.
 *
 * The real controller and data plane, the informers fed by the scripted HTTP stand-in of
 * tests/fuzz (fake_cluster.h); listeners are real sockets on a loopback address of this
 * process's own (127.0.14.x, from the pid).
 */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "controller/controller.h"
#include "resolver/conn.h"
#include "resolver/worker.h"
#include "tests/fuzz/fake_cluster.h"
#include "tests/fuzz/fake_http.h"

#define N 300

static struct dataplane *dp;
static struct event_base *base;
static struct fake_cluster *fc;

/* A started data plane of 2 workers and an event base, for both fixtures. */
static void start_dataplane(void)
{
    log_set_level(LOG_ERROR);
    struct dp_limits limits;
    dp_limits_default(&limits);
    dp = dataplane_new(2, &limits);
    base = event_base_new();
    cr_assert(dp && base);
    char err[512] = "";
    cr_assert_eq(dataplane_start(dp, err, sizeof(err)), 0, "%s", err);
}

static void setup(void)
{
    start_dataplane();
    char err[512] = "";
    char bind[32];
    snprintf(bind, sizeof(bind), "127.0.14.%d", (int)(getpid() % 250) + 1);
    fc = fake_cluster_start(base, dp, N, bind, 41000, err, sizeof(err));
    cr_assert_not_null(fc, "%s", err);
}

static void teardown(void)
{
    fake_cluster_free(fc);
    dataplane_stop(dp);
    dataplane_free(dp);
    event_base_free(base);
}

TestSuite(controller_routes, .init = setup, .fini = teardown, .timeout = 60);

/* Runs the control loop until a snapshot newer than gen is published and every worker
 * applied it; returns its generation. */
static unsigned long long publish_and_apply(unsigned long long gen)
{
    for (int i = 0; i < 100000 && fake_cluster_generation(dp) <= gen; i++)
        fake_cluster_settle(fc);
    unsigned long long now = fake_cluster_generation(dp);
    cr_assert_gt(now, gen, "no snapshot was published");
    for (int i = 0; i < 100000 && !fake_cluster_applied(dp, now); i++)
        nanosleep(&(struct timespec){0, 20000}, NULL);
    cr_assert(fake_cluster_applied(dp, now), "the workers did not apply generation %llu", now);
    return now;
}

static const struct route_service *route_of(struct route_snapshot *s, int i)
{
    char name[32];
    snprintf(name, sizeof(name), "svc-%d", i);
    return route_snapshot_find(s, "bench", 5, name, strlen(name));
}

Test(controller_routes, every_service_is_routed_after_the_lists)
{
    struct route_snapshot *s = route_table_acquire(&dp->routes);
    cr_assert_eq(s->n_services, N);
    for (int i = 0; i < N; i++) {
        const struct route_service *r = route_of(s, i);
        cr_assert_not_null(r, "svc-%d", i);
        cr_assert_eq(r->n_listeners, 1);
        cr_assert_eq(r->ports[0].n_endpoints, 0);
    }
    route_snapshot_unref(s);
    cr_assert_eq(fake_cluster_services_built(fc), N);
}

Test(controller_routes, one_endpointslice_change_builds_exactly_one_route)
{
    struct route_snapshot *before = route_table_acquire(&dp->routes);
    double built = fake_cluster_services_built(fc);
    cr_assert_geq(built, 0, "the controller does not count the routes it builds");
    fake_cluster_set_ready(fc, 123, true);
    publish_and_apply(before->generation);
    cr_assert_eq(fake_cluster_services_built(fc) - built, 1);

    struct route_snapshot *after = route_table_acquire(&dp->routes);
    cr_assert_eq(route_of(after, 123)->ports[0].n_endpoints, 1);
    cr_assert_eq(route_of(before, 123)->ports[0].n_endpoints, 0); /* the old one is untouched */
    /* every other service's route is the very same object */
    for (int i = 0; i < N; i++) {
        if (i != 123)
            cr_assert_eq(route_of(after, i), route_of(before, i), "svc-%d", i);
    }
    struct route_change *ch = NULL;
    cr_assert_eq(route_snapshot_diff(before, after, &ch), 1);
    free(ch);
    /* every worker routes svc-123's connections by the new one */
    for (int w = 0; w < dp->nworkers; w++)
        cr_assert_eq(route_of(after, 123)->svc->workers[w].route, route_of(after, 123));
    route_snapshot_unref(before);
    route_snapshot_unref(after);
}

Test(controller_routes, one_service_change_builds_exactly_one_route)
{
    struct route_snapshot *before = route_table_acquire(&dp->routes);
    double built = fake_cluster_services_built(fc);
    fake_cluster_set_port_name(fc, 7, "web");
    publish_and_apply(before->generation);
    cr_assert_eq(fake_cluster_services_built(fc) - built, 1);
    route_snapshot_unref(before);
}

Test(controller_routes, repeated_changes_build_one_route_each)
{
    unsigned long long gen = fake_cluster_generation(dp);
    double built = fake_cluster_services_built(fc);
    for (int k = 0; k < 20; k++) {
        fake_cluster_set_ready(fc, (k * 37) % N, k % 2 == 0);
        gen = publish_and_apply(gen);
    }
    cr_assert_eq(fake_cluster_services_built(fc) - built, 20);
}

static const struct route_service *current_route_of(int i)
{
    struct route_snapshot *s = route_table_acquire(&dp->routes);
    const struct route_service *r = route_of(s, i);
    route_snapshot_unref(s); /* the controller's reference keeps r while nothing is published */
    return r;
}

Test(controller_routes, a_lingering_route_follows_its_endpointslices)
{
    /* deleted while it holds a connection: its route stays, and the held requests must reach
     * the restored pods once they are ready */
    struct svc_state *svc = svc_registry_get(&dp->registry, "bench", "svc-42");
    cr_assert_not_null(svc);
    atomic_store(&svc->held_conns, 1);
    unsigned long long gen = fake_cluster_generation(dp);
    fake_cluster_delete_es(fc, 42);
    gen = publish_and_apply(gen);
    cr_assert_not_null(current_route_of(42), "the route of a deleted, holding service stays");
    cr_assert_eq(current_route_of(42)->ports[0].n_endpoints, 0);
    double built = fake_cluster_services_built(fc);
    fake_cluster_set_ready(fc, 42, true);
    publish_and_apply(gen);
    cr_assert_eq(fake_cluster_services_built(fc) - built, 1);
    cr_assert_eq(current_route_of(42)->ports[0].n_endpoints, 1);
    atomic_store(&svc->held_conns, 0);
    svc_state_unref(svc);
}

/* ---- a resolver port taken by another socket ---- */

static int blocker = -1;
static char bind_ip[32];

static void setup_taken(void)
{
    start_dataplane();
    char err[512] = "";
    snprintf(bind_ip, sizeof(bind_ip), "127.0.15.%d", (int)(getpid() % 250) + 1);
    struct addr a;
    char text[64];
    snprintf(text, sizeof(text), "%s:%d", bind_ip, 42005);
    cr_assert_eq(addr_parse(text, &a, err, sizeof(err)), 0, "%s", err);
    blocker = listener_socket(&a, false, err, sizeof(err));
    cr_assert_geq(blocker, 0, "%s", err);
    fc = fake_cluster_start(base, dp, N, bind_ip, 42000, err, sizeof(err));
    cr_assert_not_null(fc, "%s", err);
}

static void teardown_taken(void)
{
    if (blocker >= 0)
        close(blocker);
    teardown();
}

TestSuite(controller_routes_taken, .init = setup_taken, .fini = teardown_taken, .timeout = 60);

Test(controller_routes_taken, a_taken_resolver_port_is_retried_by_its_timer_not_in_a_loop)
{
    cr_assert_eq(current_route_of(5)->n_listeners, 0, "svc-5's port is taken");
    double built = fake_cluster_services_built(fc);
    /* every loop turn runs what is due: a retry at once would build svc-5 each time */
    for (int i = 0; i < 200; i++)
        fake_cluster_settle(fc);
    cr_assert_lt(fake_cluster_services_built(fc) - built, 20,
                 "svc-5 was built %.0f times in 200 loop turns",
                 fake_cluster_services_built(fc) - built);
    /* the port is let go: the relisten timer (1 s) builds svc-5 again, with its listener */
    close(blocker);
    blocker = -1;
    for (int i = 0; i < 2000 && current_route_of(5)->n_listeners == 0; i++) {
        fake_cluster_settle(fc);
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    cr_assert_eq(current_route_of(5)->n_listeners, 1);
    cr_assert_eq(current_route_of(6)->n_listeners, 1);
}

/* ---- holdfast listens on a resolver port before anything names it ---- */

struct named {
    int checked, refused;
    char first_refused[256];
    int status_writes; /* PATCHes of svc-0's status started */
};

static struct named named;

/* Connects to bind_ip:port as a client would once the write is in: refused means nothing
 * listened there when holdfast named the port. */
static void check_port(int port, const char *what)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, bind_ip, &sa.sin_addr);
    named.checked++;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && named.refused++ == 0)
        snprintf(named.first_refused, sizeof(named.first_refused), "%s (port %d)", what, port);
    close(fd);
}

/* At the start of each write that names resolver ports: a resolver EndpointSlice (its
 * ports[].port) and a status with status.ports[].resolverPort. */
static void on_write_start(const char *what, const char *body, void *arg)
{
    (void)arg;
    if (strncmp(what, "PATCH ", 6) == 0 && strstr(what, "/elastiservices/svc-0/status"))
        named.status_writes++;
    if (strncmp(what, "GET ", 4) == 0 || strncmp(what, "DELETE ", 7) == 0)
        return;
    cJSON *obj = cJSON_Parse(body);
    if (!obj)
        return;
    const cJSON *ports = NULL;
    const char *key = NULL;
    if (strstr(what, "/endpointslices")) {
        ports = cJSON_GetObjectItem(obj, "ports");
        key = "port";
    } else if (strstr(what, "/elastiservices/")) {
        ports = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "status"), "ports");
        key = "resolverPort";
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, ports)
    {
        const cJSON *n = cJSON_GetObjectItem(p, key);
        if (cJSON_IsNumber(n))
            check_port(n->valueint, what);
    }
    cJSON_Delete(obj);
}

static void setup_leading(void)
{
    start_dataplane();
    char err[512] = "";
    snprintf(bind_ip, sizeof(bind_ip), "127.0.16.%d", (int)(getpid() % 250) + 1);
    fc = fake_cluster_start_leading(base, dp, 1, bind_ip, 43000, err, sizeof(err));
    cr_assert_not_null(fc, "%s", err);
    memset(&named, 0, sizeof(named));
    fake_http_on_start(on_write_start, NULL);
    fake_http_trace(getenv("FUZZ_TRACE") != NULL);
    setvbuf(stdout, NULL, _IONBF, 0);
}

static void teardown_leading(void)
{
    fake_http_on_start(NULL, NULL);
    teardown();
}

TestSuite(controller_switch, .init = setup_leading, .fini = teardown_leading, .timeout = 60);

/*
 * Found on the real control plane (test_controller's two-port test, one CI run): status.mode
 * was proxy and the resolver slice written while nothing listened on the resolver ports yet
 * (the route was published on the next turn of the loop, and the loop's thread was preempted
 * for 47 ms in between), so a connection that followed the slice was refused. A scale to zero
 * by hand: every write that names a resolver port starts after holdfast listens on it.
 */
/* Scales svc-0 to zero by hand: answers the leader's first /scale read with 0. */
static void scale_read_answers_zero(void)
{
    struct http_request *r = NULL;
    for (int i = 0; i < 5000; i++) { /* the first poll is 1 s after the start */
        fake_cluster_settle(fc);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
        r = fake_http_pick("/deployments/svc-0/scale", strlen("/deployments/svc-0/scale"));
        if (r && strstr(fake_http_what(r), "/deployments/svc-0/scale"))
            break;
        r = NULL;
    }
    cr_assert_not_null(r, "the leader never read svc-0's scale");
    static const char scale[] = "{\"kind\":\"Scale\",\"apiVersion\":\"autoscaling/v1\","
                                "\"metadata\":{\"name\":\"svc-0\",\"namespace\":\"bench\"},"
                                "\"spec\":{\"replicas\":0},\"status\":{\"replicas\":0}}";
    fake_http_answer(r, 200, scale, strlen(scale), false, false);
    for (int i = 0; i < 100; i++)
        fake_cluster_settle(fc);
}

Test(controller_switch, a_resolver_port_listens_before_any_write_names_it)
{
    scale_read_answers_zero();
    cr_assert_geq(named.checked, 2, "no resolver slice and status naming a resolver port (%d)",
                  named.checked);
    cr_assert_eq(named.refused, 0, "%d of %d: first %s", named.refused, named.checked,
                 named.first_refused);
}

/*
 * One status write in flight per ElastiService: a second asked for meanwhile waits for the
 * first's answer, merged with any others. Two merge patches in flight at once can be applied in
 * either order (separate connections): test_controller's long-outage test, about 1 run in 18,
 * ended with status.mode serve while holdfast held proxy ({mode: serve} from a /scale read and
 * {mode: proxy} from the workload watch, sent 1 ms apart). Here the proxy switch's write is left
 * unanswered while the Service's port is renamed (status.ports follows).
 */
Test(controller_switch, a_status_write_waits_for_the_one_in_flight)
{
    scale_read_answers_zero();
    cr_assert_eq(named.status_writes, 1, "the proxy switch's status write");
    struct http_request *first = fake_http_pick("/elastiservices/svc-0/status", 28);
    cr_assert(first && strstr(fake_http_body(first), "\"mode\":\"proxy\""));
    fake_cluster_set_port_name(fc, 0, "web");
    for (int i = 0; i < 100; i++)
        fake_cluster_settle(fc);
    cr_assert_eq(named.status_writes, 1,
                 "a second status write was sent while the first was in "
                 "flight (%d)",
                 named.status_writes);
    static const char answer[] = "{\"metadata\":{\"name\":\"svc-0\",\"namespace\":\"bench\","
                                 "\"resourceVersion\":\"900\"},\"status\":{\"mode\":\"proxy\"}}";
    fake_http_answer(first, 200, answer, strlen(answer), false, false);
    for (int i = 0; i < 100; i++)
        fake_cluster_settle(fc);
    cr_assert_eq(named.status_writes, 2, "the queued write follows the answer");
    struct http_request *second = fake_http_pick("/elastiservices/svc-0/status", 28);
    cr_assert(second && strstr(fake_http_what(second), "/elastiservices/svc-0/status"));
    cr_assert(strstr(fake_http_body(second), "\"name\":\"web\""), "%s", fake_http_body(second));
}

/* ---- the API calls of a transition, counted (issue 13's budget) ---- */

/*
 * Every request the controller sends (watches aside) from a transition's start until it has
 * settled, as the fake API server of fake_cluster_start_api receives them; the controller's own
 * count (holdfast_kube_api_requests_total) must say the same.
 */
struct api_log {
    int n, events;
    char calls[64][160];
    int n_reads;          /* /scale reads */
    uint64_t reads[4096]; /* when each was sent, ms (CLOCK_MONOTONIC) */
};

static struct api_log api_log;

static void on_api_start(const char *what, const char *body, void *arg)
{
    (void)body;
    (void)arg;
    if (strstr(what, "watch=true"))
        return;
    if (strstr(what, "/events"))
        api_log.events++;
    if (strncmp(what, "GET ", 4) == 0 && strstr(what, "/scale") && api_log.n_reads < 4096) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        api_log.reads[api_log.n_reads++] = (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    }
    const char *path = strstr(what, "://");
    path = path ? strchr(path + 3, '/') : NULL;
    if (api_log.n < 64)
        snprintf(api_log.calls[api_log.n], sizeof(api_log.calls[0]), "%.*s%s",
                 (int)(strchr(what, ' ') - what + 1), what, path ? path : what);
    api_log.n++;
}

/* The sum of holdfast_kube_api_requests_total's samples, watches aside. */
static double requests_sent(void)
{
    struct mtext out;
    mtext_init(&out);
    controller_metrics(&out, fake_cluster_controller(fc));
    double sum = 0;
    const char *key = "\nholdfast_kube_api_requests_total{";
    for (const char *at = out.data ? strstr(out.data, key) : NULL; at; at = strstr(at + 1, key)) {
        const char *end = strchr(at + 1, '}');
        if (end && !memmem(at, (size_t)(end - at), "verb=\"watch\"", 12))
            sum += strtod(end + 1, NULL);
    }
    mtext_free(&out);
    return sum;
}

static void api_setup(bool es_listed, unsigned polling_interval_ms)
{
    start_dataplane();
    char err[512] = "";
    snprintf(bind_ip, sizeof(bind_ip), "127.0.17.%d", (int)(getpid() % 250) + 1);
    struct fake_cluster_api_opts o = {.count = 1,
                                      .es_listed = es_listed,
                                      .replicas = 0,
                                      .polling_interval_ms = polling_interval_ms};
    fc = fake_cluster_start_api(base, dp, &o, bind_ip, 44000, err, sizeof(err));
    cr_assert_not_null(fc, "%s", err);
    /* what the start leads to (a listed proxy-mode service's resolver slice, its first poll) */
    for (int i = 0; i < 5000; i++) {
        fake_cluster_serve(fc);
        if (!es_listed || fake_cluster_metric(fc, "holdfast_controller_evaluations_total") >= 1)
            break;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    fake_cluster_serve(fc);
    memset(&api_log, 0, sizeof(api_log));
    fake_http_on_start(on_api_start, NULL);
}

static void api_teardown(void)
{
    fake_http_on_start(NULL, NULL);
    teardown();
}

static const char *es_mode(void)
{
    const cJSON *st = cJSON_GetObjectItem(fake_cluster_api_es(fc, 0), "status");
    const cJSON *m = cJSON_GetObjectItem(st, "mode");
    return cJSON_IsString(m) ? m->valuestring : "";
}

/* Answers the controller's calls until done() holds (5 s at most), then for 2.5 s more: two
 * ticks of the poll, so a call a tick would still send is counted too. */
static void serve_until(bool (*done)(void), const char *what)
{
    for (int i = 0; i < 5000 && !done(); i++) {
        fake_cluster_serve(fc);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    cr_assert(done(), "%s never happened", what);
    for (int i = 0; i < 250; i++) {
        fake_cluster_serve(fc);
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
}

static void api_log_print(const char *title)
{
    fprintf(stderr, "%s: %d calls (%d of them Events)\n", title, api_log.n, api_log.events);
    for (int i = 0; i < api_log.n && i < 64; i++)
        fprintf(stderr, "  %s\n", api_log.calls[i]);
}

static bool in_proxy(void)
{
    return strcmp(es_mode(), "proxy") == 0 && fake_cluster_api_slices(fc) == 1;
}

static void setup_created(void)
{
    api_setup(false, 0);
}

TestSuite(controller_api_budget, .fini = api_teardown, .timeout = 60);

/*
 * An ElastiService created for a target at 0 replicas, to proxy mode. The calls it needs: its
 * finalizer (main resource: a status write cannot carry it), the resolver EndpointSlice, one
 * status write (mode, ports, conditions, observedGeneration); and the ScaledToZero Event the
 * docs promise, counted apart. The target's replicas come from the workload watch's cache.
 */
Test(controller_api_budget, a_new_elastiservice_enters_proxy_mode_in_3_calls, .init = setup_created)
{
    double sent = requests_sent();
    fake_cluster_create_es(fc, 0);
    serve_until(in_proxy, "proxy mode (status.mode and the resolver slice)");
    api_log_print("ElastiService created, target at 0 -> proxy mode");
    cr_assert_eq(requests_sent() - sent, api_log.n,
                 "holdfast_kube_api_requests_total counted %.0f, the API server received %d",
                 requests_sent() - sent, api_log.n);
    cr_assert_eq(api_log.events, 1, "the ScaledToZero Event");
    cr_assert_leq(api_log.n - api_log.events, 3, "%d calls besides the Event",
                  api_log.n - api_log.events);
}

static bool scaled_up(void)
{
    return fake_cluster_api_replicas(fc, 0) == 1;
}

static void wake_svc0(void);

static bool in_serve(void)
{
    return strcmp(es_mode(), "serve") == 0 && fake_cluster_api_slices(fc) == 0;
}

static void setup_proxy(void)
{
    api_setup(true, 0);
}

static bool cold_start_written(void)
{
    return cJSON_GetObjectItem(cJSON_GetObjectItem(fake_cluster_api_es(fc, 0), "status"),
                               "lastColdStart") != NULL;
}

/*
 * A wake: the first held request -> the scale call -> the pod ready -> serve mode, and the cold
 * start recorded. The calls it needs: the scale patch (conditional on the resourceVersion the
 * workload watch cached, so it never lowers a count someone raised), the resolver slice's
 * delete, one status write (mode serve, lastScaledUpTime, conditions), the list of the target's
 * pods for the cold start's pod phases and the status write of status.lastColdStart; and the
 * Events ScaledUp, SwitchedToServe and ColdStart, counted apart.
 */
Test(controller_api_budget, a_wake_to_serve_mode_in_5_calls, .init = setup_proxy)
{
    cr_assert(in_proxy(), "the listed ElastiService is in proxy mode with its resolver slice");
    double sent = requests_sent();
    wake_svc0();
    serve_until(scaled_up, "the scale call");
    fake_cluster_set_ready(fc, 0, true); /* the pod is a ready endpoint */
    serve_until(in_serve, "serve mode (status.mode, the resolver slice deleted)");
    serve_until(cold_start_written, "status.lastColdStart");
    api_log_print("wake -> scale call -> pod ready -> serve mode -> cold start recorded");
    cr_assert_eq(requests_sent() - sent, api_log.n,
                 "holdfast_kube_api_requests_total counted %.0f, the API server received %d",
                 requests_sent() - sent, api_log.n);
    cr_assert_eq(api_log.events, 3, "the ScaledUp, SwitchedToServe and ColdStart Events");
    cr_assert_not_null(
        cJSON_GetObjectItem(cJSON_GetObjectItem(fake_cluster_api_es(fc, 0), "status"),
                            "lastScaledUpTime"),
        "status.lastScaledUpTime is written (with the serve switch)");
    cr_assert_leq(api_log.n - api_log.events, 5, "%d calls besides the Events",
                  api_log.n - api_log.events);
}

/* As the data plane does for the first held request of svc-0. */
static void wake_svc0(void)
{
    struct svc_state *svc = svc_registry_get(&dp->registry, "bench", "svc-0");
    cr_assert_not_null(svc);
    atomic_store(&svc->wake_started_ns, 1);
    wakeq_push_wake(&dp->wakeq, svc);
    svc_state_unref(svc);
}

static bool three_calls(void)
{
    return api_log.n >= 3;
}

/*
 * The workload watch's cache is behind: the target was scaled to 3 by hand, and the wake's
 * patch carries the version cached at 0. The API server refuses it (409), the wake reads the
 * target and leaves the 3 alone: a wake never lowers a count someone raised.
 */
Test(controller_api_budget, a_wake_on_a_stale_cache_never_lowers_a_raised_count,
     .init = setup_proxy)
{
    fake_cluster_api_set_replicas(fc, 0, 3, false);
    wake_svc0();
    for (int i = 0; i < 5000 && api_log.n < 2; i++) {
        fake_cluster_serve(fc);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    fake_cluster_serve(fc);
    api_log_print("wake on a stale cache, target raised to 3 meanwhile");
    cr_assert_eq(api_log.n, 2, "the conditional patch and the read after its 409");
    cr_assert(strstr(api_log.calls[0], "PATCH ") && strstr(api_log.calls[0], "/scale"));
    cr_assert(strstr(api_log.calls[1], "GET ") && strstr(api_log.calls[1], "/scale"));
    cr_assert_eq(fake_cluster_api_replicas(fc, 0), 3);
}

/* The cache is behind but the target is still at 0 (another write moved its version): the
 * 409 leads to a read and a patch with the version read, as a wake without a cache does. */
Test(controller_api_budget, a_wake_on_a_stale_cache_at_zero_reads_and_scales, .init = setup_proxy)
{
    fake_cluster_api_set_replicas(fc, 0, 0, false);
    wake_svc0();
    for (int i = 0; i < 5000 && !three_calls(); i++) {
        fake_cluster_serve(fc);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    fake_cluster_serve(fc);
    api_log_print("wake on a stale cache, target still at 0");
    cr_assert_eq(fake_cluster_api_replicas(fc, 0), 1);
    cr_assert(strstr(api_log.calls[0], "PATCH ") && strstr(api_log.calls[0], "/scale"));
    cr_assert(strstr(api_log.calls[1], "GET ") && strstr(api_log.calls[1], "/scale"));
    cr_assert(strstr(api_log.calls[2], "PATCH ") && strstr(api_log.calls[2], "/scale"));
}

static void setup_proxy_polling(void)
{
    api_setup(true, 1000);
}

static bool scaled_up_written(void)
{
    const cJSON *st = cJSON_GetObjectItem(fake_cluster_api_es(fc, 0), "status");
    return cJSON_GetObjectItem(st, "lastScaledUpTime") != NULL;
}

/* The leader keeps a wake's lastScaledUpTime for the serve switch's status write; when no pod
 * gets ready, the next poll writes it. */
Test(controller_api_budget, a_wake_without_a_ready_pod_gets_lastscaleduptime_from_the_poll,
     .init = setup_proxy_polling)
{
    wake_svc0();
    for (int i = 0; i < 5000 && fake_cluster_api_replicas(fc, 0) != 1; i++) {
        fake_cluster_serve(fc);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    cr_assert_eq(fake_cluster_api_replicas(fc, 0), 1, "the wake scaled the target");
    for (int i = 0; i < 5000 && !scaled_up_written(); i++) {
        fake_cluster_serve(fc);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    cr_assert(scaled_up_written(), "status.lastScaledUpTime was never written");
    cr_assert_str_eq(es_mode(), "proxy");
}

/* ---- the polls' /scale reads, paced over the interval ---- */

#define PACED 16

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void setup_paced(void)
{
    start_dataplane();
    char err[512] = "";
    snprintf(bind_ip, sizeof(bind_ip), "127.0.18.%d", (int)(getpid() % 250) + 1);
    struct fake_cluster_api_opts o = {
        .count = PACED, .es_listed = true, .replicas = 0, .polling_interval_ms = 1000};
    fc = fake_cluster_start_api(base, dp, &o, bind_ip, 45000, err, sizeof(err));
    cr_assert_not_null(fc, "%s", err);
    memset(&api_log, 0, sizeof(api_log));
    fake_http_on_start(on_api_start, NULL);
}

/*
 * Every ElastiService's /scale read is due at once after a start; from then on each is read at
 * its own phase of the interval (controller.c's next_check_at: a hash of its name), so a round's
 * reads are spread over the interval, not sent at its start. Counted: the reads sent in each
 * quarter of the interval, over two intervals from the third check on (the second moves each
 * to its phase). At their phases these 16 names fall 3, 5, 4 and 4 to the quarters of a 1 s
 * interval; sent together, one quarter would hold all 16. (A stall of the loop may move a
 * quarter's reads into the next one: at most 10 is allowed.)
 */
Test(controller_api_budget, the_polls_scale_reads_are_spread_over_the_interval, .init = setup_paced,
     .timeout = 60)
{
    for (int i = 0; i < 5000 && api_log.n_reads < PACED; i++) {
        fake_cluster_serve(fc);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    cr_assert_geq(api_log.n_reads, PACED, "the first round reads every target");
    uint64_t start = api_log.reads[0];
    for (uint64_t end = start + 4200; now_ms() < end;) {
        fake_cluster_serve(fc);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    int slice[8] = {0}, total = 0;
    for (int i = 0; i < api_log.n_reads; i++) {
        uint64_t at = api_log.reads[i] - start;
        if (at >= 2000 && at < 4000) {
            slice[(at - 2000) / 250]++;
            total++;
        }
    }
    fprintf(stderr,
            "/scale reads per quarter of the interval, 2 intervals: %d %d %d %d %d %d %d %d\n",
            slice[0], slice[1], slice[2], slice[3], slice[4], slice[5], slice[6], slice[7]);
    cr_assert_geq(total, PACED, "every target is read once per interval (%d reads)", total);
    for (int k = 0; k < 8; k++)
        cr_assert_leq(slice[k], 10, "%d of %d reads in one quarter of the interval", slice[k],
                      PACED);
}
