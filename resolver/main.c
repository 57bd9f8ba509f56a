/*
 * main: the `holdfast` command line and the wiring of one process: the data plane's workers,
 * the control thread's event loop (standalone control plane, admin endpoint, signals), and
 * the graceful drain on SIGTERM.
 *
 *   holdfast run --config FILE [--workers N] [--admin-listen HOST:PORT]
 *                [--log-level debug|info|warn|error] [--drain-timeout SECONDS]
 *   holdfast version
 *
 * A bad flag or config file exits 2 with one message.
 */
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/log.h"
#include "resolver/admin.h"
#include "resolver/config.h"
#include "resolver/standalone.h"
#include "resolver/dataplane.h"
#include "common/duration.h"
#include "controller/controller.h"
#include "controller/restore.h"

#define EXIT_USAGE 2
#define DRAIN_POLL_MS 50

struct run_options {
    const char *config_file; /* standalone mode when set; else Kubernetes mode */
    int workers;
    struct addr admin;
    bool admin_given;
    enum log_level log_level;
    unsigned drain_timeout_s;
    unsigned shutdown_delay_s;  /* SIGTERM -> listeners closed: still accepting meanwhile */
    struct controller_opts k8s; /* Kubernetes mode */
    unsigned admin_port;        /* Kubernetes mode: admin on bind_address:admin_port (8013) */
    char bind_address[64];
};

/* The running process, as the control thread's callbacks see it. */
struct process {
    struct event_base *base;
    struct dataplane *dp;
    struct controller *ctl; /* Kubernetes mode, else NULL */
    bool lease_done;        /* the leader Lease was handed back (or there was none) */
    struct run_options *opt;
    struct event *drain_poll;
    struct event *drain_start; /* the end of the shutdown delay */
    struct event *ready_check;
    uint64_t drain_deadline_ns;
    uint64_t started_ns;
    bool draining;
};

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: holdfast run --config FILE [common flags]          standalone mode\n"
            "       holdfast run [kubernetes flags] [common flags]     Kubernetes mode\n"
            "       holdfast restore --all | --namespace NS [NAME]  [--kubeconfig FILE]\n"
            "                        [--timeout SECONDS]  back to serve mode\n"
            "                        [--uninstall [--lease-name NAME] [--lease-namespace NS]]\n"
            "                        (the uninstall hook: takes the leader Lease first, and\n"
            "                        removes holdfast's finalizer from each ElastiService)\n"
            "       holdfast version\n"
            "common flags: --workers N, --admin-listen HOST:PORT,\n"
            "  --log-level debug|info|warn|error, --drain-timeout SECONDS,\n"
            "  --shutdown-delay SECONDS (keep accepting after SIGTERM, not ready; default 0)\n"
            "kubernetes flags (environment variable in brackets):\n"
            "  --kubeconfig FILE [KUBECONFIG; default: in-cluster]\n"
            "  --namespace NS [HOLDFAST_NAMESPACE; default: all namespaces]\n"
            "  --resolver-service NAME [HOLDFAST_RESOLVER_SERVICE]\n"
            "  --resolver-namespace NS [POD_NAMESPACE]\n"
            "  --pod-ip IP [POD_IP]  --pod-name NAME [POD_NAME]  --node-name NAME [NODE_NAME]\n"
            "  --bind-address IP [HOLDFAST_BIND_ADDRESS; default 0.0.0.0]\n"
            "  --admin-port PORT (admin on the bind address; default 8013)\n"
            "  --proxy-port-range A-B [HOLDFAST_PROXY_PORT_RANGE; default 20000-29999]\n"
            "  --shared-port PORT [HOLDFAST_SHARED_PORT; default 8012, 0 = none]\n"
            "  --polling-interval DURATION [HOLDFAST_POLLING_INTERVAL; default 30s]\n"
            "  --kube-api-qps N [HOLDFAST_KUBE_API_QPS; default 20]\n"
            "  --kube-api-burst N [HOLDFAST_KUBE_API_BURST; default 30]\n"
            "  --prometheus-address URL [PROMETHEUS_TRIGGER_SERVER_ADDRESS]\n"
            "  --prometheus-max-concurrent N [HOLDFAST_PROMETHEUS_MAX_CONCURRENT; default 8]\n"
            "    (trigger queries in flight to one Prometheus server at a time)\n"
            "  --leader-elect=true|false [HOLDFAST_LEADER_ELECT; default true]\n"
            "  --kube-api-timeout DURATION [HOLDFAST_KUBE_API_TIMEOUT; default 30s]\n"
            "  --watch-targets=true|false [HOLDFAST_WATCH_TARGETS; default true]\n"
            "  --status-heartbeat DURATION [HOLDFAST_STATUS_HEARTBEAT; default derived]\n"
            "  --liveness-bound DURATION [HOLDFAST_LIVENESS_BOUND; default derived]\n"
            "  --scale-down-probe-timeout DURATION [HOLDFAST_SCALE_DOWN_PROBE_TIMEOUT; 30s]\n"
            "  --scale-down-grace-period DURATION [HOLDFAST_SCALE_DOWN_GRACE_PERIOD; 5s]\n"
            "  --insecure-skip-tls-verify (logged at every start)\n");
}

__attribute__((format(printf, 1, 2))) static int fail_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "holdfast: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    usage(stderr);
    return EXIT_USAGE;
}

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (!*s || *end || errno || v > max || *s == '-')
        return -1;
    *out = v;
    return 0;
}

/* A flag's value, or else the environment variable's, or else NULL. */
static const char *env_default(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcmp(s, "true") || !strcmp(s, "1") || !strcmp(s, "yes")) {
        *out = true;
        return 0;
    }
    if (!strcmp(s, "false") || !strcmp(s, "0") || !strcmp(s, "no")) {
        *out = false;
        return 0;
    }
    return -1;
}

/* A request rate: a number from 0.1 to 10000. */
static int parse_rate(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0.1 && v <= 10000))
        return -1;
    *out = v;
    return 0;
}

/* Kubernetes-mode settings from flags (already in opt) and the environment. */
/* A duration flag (or its variable) in milliseconds, min_ms..max_ms. */
static int k8s_duration(const char *flag, const char *env, const char *value, uint64_t min_ms,
                        uint64_t max_ms, uint64_t *out_ms)
{
    if (!value)
        value = env_default(env);
    if (!value)
        return 0;
    int64_t ns;
    char err[256] = "";
    if (duration_parse(value, &ns, err, sizeof(err)) < 0)
        return fail_usage("%s: %s", flag, err);
    if (ns < 0 || (uint64_t)ns / 1000000 < min_ms || (uint64_t)ns / 1000000 > max_ms)
        return fail_usage("%s: \"%s\" is out of range (%llu ms to %llu s)", flag, value,
                          (unsigned long long)min_ms, (unsigned long long)max_ms / 1000);
    *out_ms = (uint64_t)ns / 1000000;
    return 0;
}

/* The liveness flags: deadlines, the workload watch, the status heartbeat, /healthz's bound. */
static int finish_liveness_options(struct controller_opts *k, const char *api_timeout,
                                   const char *heartbeat, const char *bound, const char *watch,
                                   const char *probe_timeout, const char *grace)
{
    uint64_t ms = 0;
    if (k8s_duration("--kube-api-timeout", "HOLDFAST_KUBE_API_TIMEOUT", api_timeout, 100, 3600000,
                     &ms))
        return EXIT_USAGE;
    k->api_timeout_ms = (long)ms;
    ms = 0;
    if (k8s_duration("--status-heartbeat", "HOLDFAST_STATUS_HEARTBEAT", heartbeat, 1000, 86400000,
                     &ms))
        return EXIT_USAGE;
    k->status_heartbeat_s = (unsigned)(ms / 1000);
    ms = 0;
    if (k8s_duration("--liveness-bound", "HOLDFAST_LIVENESS_BOUND", bound, 1000, 86400000, &ms))
        return EXIT_USAGE;
    k->liveness_bound_ms = (unsigned)ms;
    if (!watch)
        watch = env_default("HOLDFAST_WATCH_TARGETS");
    bool on = true;
    if (watch && parse_bool(watch, &on) < 0)
        return fail_usage("--watch-targets: \"%s\" is not true or false", watch);
    k->no_target_watch = !on;
    ms = 0;
    if (k8s_duration("--scale-down-probe-timeout", "HOLDFAST_SCALE_DOWN_PROBE_TIMEOUT",
                     probe_timeout, 500, 3600000, &ms))
        return EXIT_USAGE;
    k->scale_down_probe_timeout_ms = (unsigned)ms;
    ms = 5000; /* kube-proxy's 1 s minimum sync period, watch latency, a loaded node */
    if (k8s_duration("--scale-down-grace-period", "HOLDFAST_SCALE_DOWN_GRACE_PERIOD", grace, 0,
                     3600000, &ms))
        return EXIT_USAGE;
    k->scale_down_grace_ms = (unsigned)ms;
    return 0;
}

static int finish_k8s_options(struct run_options *opt, const char *port_range, const char *polling,
                              const char *shared, const char *leader)
{
    struct controller_opts *k = &opt->k8s;
    if (!k->kubeconfig)
        k->kubeconfig = env_default("KUBECONFIG");
    if (!k->namespace_)
        k->namespace_ = env_default("HOLDFAST_NAMESPACE");
    if (!k->resolver_service)
        k->resolver_service = env_default("HOLDFAST_RESOLVER_SERVICE");
    if (!k->resolver_namespace)
        k->resolver_namespace = env_default("POD_NAMESPACE");
    if (!k->pod_ip)
        k->pod_ip = env_default("POD_IP");
    if (!k->pod_name)
        k->pod_name = env_default("POD_NAME");
    if (!k->node_name)
        k->node_name = env_default("NODE_NAME");
    if (!k->prometheus_address)
        k->prometheus_address = env_default("PROMETHEUS_TRIGGER_SERVER_ADDRESS");
    k->prometheus_authorization = env_default("PROMETHEUS_TRIGGER_AUTHORIZATION_HEADER");
    if (!opt->bind_address[0]) {
        const char *b = env_default("HOLDFAST_BIND_ADDRESS");
        snprintf(opt->bind_address, sizeof(opt->bind_address), "%s", b ? b : "0.0.0.0");
    }
    k->bind_address = opt->bind_address;
    char err[256];
    struct addr probe;
    char text[96];
    snprintf(text, sizeof(text), strchr(opt->bind_address, ':') ? "[%s]:0" : "%s:0",
             opt->bind_address);
    if (addr_parse(text, &probe, err, sizeof(err)) < 0)
        return fail_usage("--bind-address: \"%s\" is not an IP address", opt->bind_address);
    if (!opt->admin_given) {
        snprintf(text, sizeof(text), strchr(opt->bind_address, ':') ? "[%s]:%u" : "%s:%u",
                 opt->bind_address, opt->admin_port ? opt->admin_port : 8013);
        addr_parse(text, &opt->admin, err, sizeof(err));
    }
    if (!port_range)
        port_range = env_default("HOLDFAST_PROXY_PORT_RANGE");
    k->port_min = 20000;
    k->port_max = 29999;
    if (port_range) {
        unsigned a, b;
        char extra;
        if (sscanf(port_range, "%u-%u%c", &a, &b, &extra) != 2 || a == 0 || a > b || b > 65535)
            return fail_usage("--proxy-port-range: \"%s\" is not A-B with 1 <= A <= B <= 65535",
                              port_range);
        k->port_min = a;
        k->port_max = b;
    }
    const char *qps = env_default("HOLDFAST_KUBE_API_QPS");
    if (!k->api_qps && qps && parse_rate(qps, &k->api_qps) < 0)
        return fail_usage("HOLDFAST_KUBE_API_QPS: \"%s\" is not a number from 0.1 to 10000", qps);
    const char *burst = env_default("HOLDFAST_KUBE_API_BURST");
    unsigned long bv;
    if (!k->api_burst && burst) {
        if (parse_uint(burst, 100000, &bv) < 0 || bv == 0)
            return fail_usage("HOLDFAST_KUBE_API_BURST: \"%s\" is not a number from 1 to 100000",
                              burst);
        k->api_burst = (int)bv;
    }
    const char *prom_max = env_default("HOLDFAST_PROMETHEUS_MAX_CONCURRENT");
    if (!k->prometheus_max_inflight && prom_max) {
        if (parse_uint(prom_max, 1000, &bv) < 0 || bv == 0)
            return fail_usage("HOLDFAST_PROMETHEUS_MAX_CONCURRENT: \"%s\" is not a number from "
                              "1 to 1000",
                              prom_max);
        k->prometheus_max_inflight = (unsigned)bv;
    }
    if (!polling)
        polling = env_default("HOLDFAST_POLLING_INTERVAL");
    k->polling_interval_ms = 30000;
    if (polling) {
        int64_t ns;
        if (duration_parse(polling, &ns, err, sizeof(err)) < 0 || ns < 100000000)
            return fail_usage("--polling-interval: %s",
                              ns < 100000000 && !err[0] ? "must be at least 100ms" : err);
        k->polling_interval_ms = (unsigned)(ns / 1000000);
    }
    if (!shared)
        shared = env_default("HOLDFAST_SHARED_PORT");
    k->shared_port = 8012;
    if (shared) {
        unsigned long v;
        if (parse_uint(shared, 65535, &v) < 0)
            return fail_usage("--shared-port: \"%s\" is not a port (0 = none)", shared);
        k->shared_port = (unsigned)v;
    }
    if (!leader)
        leader = env_default("HOLDFAST_LEADER_ELECT");
    k->leader_elect = true;
    if (leader && parse_bool(leader, &k->leader_elect) < 0)
        return fail_usage("--leader-elect: \"%s\" is not true or false", leader);
    return 0;
}

static int parse_run_options(int argc, char **argv, struct run_options *opt)
{
    enum {
        O_KUBECONFIG = 256,
        O_NAMESPACE,
        O_RESOLVER_SERVICE,
        O_RESOLVER_NAMESPACE,
        O_POD_IP,
        O_POD_NAME,
        O_NODE_NAME,
        O_BIND,
        O_PORT_RANGE,
        O_SHARED_PORT,
        O_POLLING,
        O_PROM_MAX,
        O_PROMETHEUS,
        O_LEADER,
        O_INSECURE,
        O_ADMIN_PORT,
        O_API_QPS,
        O_API_BURST,
        O_API_TIMEOUT,
        O_HEARTBEAT,
        O_LIVENESS,
        O_WATCH_TARGETS,
        O_PROBE_TIMEOUT,
        O_GRACE,
    };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"workers", required_argument, NULL, 'w'},
        {"admin-listen", required_argument, NULL, 'a'},
        {"log-level", required_argument, NULL, 'l'},
        {"drain-timeout", required_argument, NULL, 'd'},
        {"shutdown-delay", required_argument, NULL, 'D'},
        {"kubeconfig", required_argument, NULL, O_KUBECONFIG},
        {"namespace", required_argument, NULL, O_NAMESPACE},
        {"resolver-service", required_argument, NULL, O_RESOLVER_SERVICE},
        {"resolver-namespace", required_argument, NULL, O_RESOLVER_NAMESPACE},
        {"pod-ip", required_argument, NULL, O_POD_IP},
        {"pod-name", required_argument, NULL, O_POD_NAME},
        {"node-name", required_argument, NULL, O_NODE_NAME},
        {"bind-address", required_argument, NULL, O_BIND},
        {"proxy-port-range", required_argument, NULL, O_PORT_RANGE},
        {"shared-port", required_argument, NULL, O_SHARED_PORT},
        {"polling-interval", required_argument, NULL, O_POLLING},
        {"prometheus-address", required_argument, NULL, O_PROMETHEUS},
        {"prometheus-max-concurrent", required_argument, NULL, O_PROM_MAX},
        {"leader-elect", required_argument, NULL, O_LEADER},
        {"insecure-skip-tls-verify", no_argument, NULL, O_INSECURE},
        {"admin-port", required_argument, NULL, O_ADMIN_PORT},
        {"kube-api-qps", required_argument, NULL, O_API_QPS},
        {"kube-api-burst", required_argument, NULL, O_API_BURST},
        {"kube-api-timeout", required_argument, NULL, O_API_TIMEOUT},
        {"status-heartbeat", required_argument, NULL, O_HEARTBEAT},
        {"liveness-bound", required_argument, NULL, O_LIVENESS},
        {"watch-targets", required_argument, NULL, O_WATCH_TARGETS},
        {"scale-down-probe-timeout", required_argument, NULL, O_PROBE_TIMEOUT},
        {"scale-down-grace-period", required_argument, NULL, O_GRACE},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    opt->workers = ncpu > 0 ? (int)ncpu : 1;
    opt->log_level = LOG_INFO;
    opt->drain_timeout_s = 30;
    char err[256];
    addr_parse("0.0.0.0:8013", &opt->admin, err, sizeof(err));
    const char *port_range = NULL, *polling = NULL, *shared = NULL, *leader = NULL;
    const char *api_timeout = NULL, *heartbeat = NULL, *bound = NULL, *watch = NULL;
    const char *probe_timeout = NULL, *grace = NULL;
    bool k8s_flag = false;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        unsigned long v;
        if (c >= O_KUBECONFIG)
            k8s_flag = true;
        switch (c) {
        case 'c':
            opt->config_file = optarg;
            break;
        case 'w':
            if (parse_uint(optarg, 256, &v) < 0 || v == 0)
                return fail_usage("--workers: \"%s\" is not a number from 1 to 256", optarg);
            opt->workers = (int)v;
            break;
        case 'a':
            if (addr_parse(optarg, &opt->admin, err, sizeof(err)) < 0)
                return fail_usage("--admin-listen: %s", err);
            opt->admin_given = true;
            break;
        case 'l':
            if (log_parse_level(optarg, &opt->log_level) < 0)
                return fail_usage("--log-level: \"%s\" is not one of debug, info, warn, error",
                                  optarg);
            break;
        case 'd':
            if (parse_uint(optarg, 86400, &v) < 0)
                return fail_usage("--drain-timeout: \"%s\" is not a number of seconds (0-86400)",
                                  optarg);
            opt->drain_timeout_s = (unsigned)v;
            break;
        case 'D':
            if (parse_uint(optarg, 3600, &v) < 0)
                return fail_usage("--shutdown-delay: \"%s\" is not a number of seconds (0-3600)",
                                  optarg);
            opt->shutdown_delay_s = (unsigned)v;
            break;
        case O_KUBECONFIG:
            opt->k8s.kubeconfig = optarg;
            break;
        case O_NAMESPACE:
            opt->k8s.namespace_ = optarg;
            break;
        case O_RESOLVER_SERVICE:
            opt->k8s.resolver_service = optarg;
            break;
        case O_RESOLVER_NAMESPACE:
            opt->k8s.resolver_namespace = optarg;
            break;
        case O_POD_IP:
            opt->k8s.pod_ip = optarg;
            break;
        case O_POD_NAME:
            opt->k8s.pod_name = optarg;
            break;
        case O_NODE_NAME:
            opt->k8s.node_name = optarg;
            break;
        case O_BIND:
            snprintf(opt->bind_address, sizeof(opt->bind_address), "%s", optarg);
            break;
        case O_PORT_RANGE:
            port_range = optarg;
            break;
        case O_SHARED_PORT:
            shared = optarg;
            break;
        case O_POLLING:
            polling = optarg;
            break;
        case O_PROMETHEUS:
            opt->k8s.prometheus_address = optarg;
            break;
        case O_PROM_MAX:
            if (parse_uint(optarg, 1000, &v) < 0 || v == 0)
                return fail_usage("--prometheus-max-concurrent: \"%s\" is not a number from 1 "
                                  "to 1000",
                                  optarg);
            opt->k8s.prometheus_max_inflight = (unsigned)v;
            break;
        case O_LEADER:
            leader = optarg;
            break;
        case O_INSECURE:
            opt->k8s.insecure_skip_tls_verify = true;
            break;
        case O_ADMIN_PORT:
            if (parse_uint(optarg, 65535, &v) < 0 || v == 0)
                return fail_usage("--admin-port: \"%s\" is not a port", optarg);
            opt->admin_port = (unsigned)v;
            break;
        case O_API_QPS:
            if (parse_rate(optarg, &opt->k8s.api_qps) < 0)
                return fail_usage("--kube-api-qps: \"%s\" is not a number from 0.1 to 10000",
                                  optarg);
            break;
        case O_API_BURST:
            if (parse_uint(optarg, 100000, &v) < 0 || v == 0)
                return fail_usage("--kube-api-burst: \"%s\" is not a number from 1 to 100000",
                                  optarg);
            opt->k8s.api_burst = (int)v;
            break;
        case O_API_TIMEOUT:
            api_timeout = optarg;
            break;
        case O_HEARTBEAT:
            heartbeat = optarg;
            break;
        case O_LIVENESS:
            bound = optarg;
            break;
        case O_WATCH_TARGETS:
            watch = optarg;
            break;
        case O_PROBE_TIMEOUT:
            probe_timeout = optarg;
            break;
        case O_GRACE:
            grace = optarg;
            break;
        case 'h':
            usage(stdout);
            exit(0);
        case ':':
            return fail_usage("%s needs a value", argv[optind - 1]);
        default:
            return fail_usage("unknown flag %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return fail_usage("unexpected argument \"%s\"", argv[optind]);
    if (opt->config_file && k8s_flag)
        return fail_usage("%s", "--config (standalone mode) does not take Kubernetes flags");
    if (opt->config_file)
        return 0;
    int rc = finish_k8s_options(opt, port_range, polling, shared, leader);
    if (rc == 0)
        rc = finish_liveness_options(&opt->k8s, api_timeout, heartbeat, bound, watch, probe_timeout,
                                     grace);
    return rc;
}

/* ---- drain and readiness ---- */

static void on_drain_poll(evutil_socket_t fd, short what, void *arg)
{
    struct process *p = arg;
    long open = dataplane_open_connections(p->dp);
    if (open == 0 && p->lease_done && (!p->ctl || controller_idle(p->ctl))) {
        log_info("drained: every connection finished", NULL);
        event_base_loopbreak(p->base);
        return;
    }
    if (mono_ns() >= p->drain_deadline_ns) {
        log_warn("drain timeout: closing the connections left", "open_connections=%ld", open);
        event_base_loopbreak(p->base);
        return;
    }
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    event_add(p->drain_poll, &tv);
}

static void on_lease_released(bool released, void *arg)
{
    struct process *p = arg;
    p->lease_done = true;
    if (!released)
        log_info("no leader Lease to hand back", NULL);
}

static void on_drain_start(evutil_socket_t fd, short what, void *arg)
{
    struct process *p = arg;
    log_info("draining: listeners closed, finishing held and relayed connections",
             "drain_timeout_s=%u open_connections=%ld", p->opt->drain_timeout_s,
             dataplane_open_connections(p->dp));
    dataplane_drain(p->dp);
    p->drain_deadline_ns = mono_ns() + (uint64_t)p->opt->drain_timeout_s * 1000000000ull;
    on_drain_poll(-1, 0, p);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct process *p = arg;
    if (p->draining) {
        log_warn("second signal: stopping now", "signal=%d", (int)sig);
        event_base_loopbreak(p->base);
        return;
    }
    p->draining = true;
    dataplane_set_stopping(p->dp); /* /readyz fails from now on */
    if (p->ctl)
        controller_stop_leading(p->ctl, on_lease_released, p); /* others take over at once */
    else
        p->lease_done = true;
    if (p->opt->shutdown_delay_s) {
        /* Until the endpoint removal reaches every kube-proxy (and every resolver slice is
         * rewritten without this replica), new connections still arrive here: keep taking
         * them, and close the listeners only after the delay. */
        log_info("stopping: not ready; still accepting for the shutdown delay",
                 "signal=%d "
                 "shutdown_delay_s=%u",
                 (int)sig, p->opt->shutdown_delay_s);
        struct timeval tv = {(time_t)p->opt->shutdown_delay_s, 0};
        event_add(p->drain_start, &tv);
        return;
    }
    on_drain_start(-1, 0, p);
}

static void on_ready_check(evutil_socket_t fd, short what, void *arg)
{
    struct process *p = arg;
    if (dataplane_ready(p->dp)) {
        log_info("ready", "startup_ms=%f", (double)(mono_ns() - p->started_ns) / 1e6);
        return;
    }
    struct timeval tv = {0, 1000};
    event_add(p->ready_check, &tv);
}

static int raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (int)rl.rlim_cur : -1;
}

static int cmd_run(int argc, char **argv)
{
    struct run_options opt = {0};
    int rc = parse_run_options(argc, argv, &opt);
    if (rc)
        return rc;
    log_set_level(opt.log_level);

    struct process p = {.opt = &opt, .started_ns = mono_ns()};
    char err[1024] = "";
    struct config *cfg = NULL;
    struct config_limits limits;
    config_limits_default(&limits);
    if (opt.config_file) {
        if (config_load(opt.config_file, &cfg, err, sizeof(err)) < 0) {
            fprintf(stderr, "holdfast: %s\n", err);
            return EXIT_USAGE;
        }
        limits = cfg->limits;
    }
    signal(SIGPIPE, SIG_IGN);
    int fds = raise_fd_limit();

    p.dp = dataplane_new(opt.workers, &limits);
    p.base = event_base_new();
    if (!p.dp || !p.base) {
        fprintf(stderr, "holdfast: out of memory starting up\n");
        return 1;
    }
    struct admin *admin = admin_start(p.base, &opt.admin, p.dp, err, sizeof(err));
    if (!admin) {
        fprintf(stderr, "holdfast: --admin-listen %s\n", err);
        return EXIT_USAGE;
    }
    struct standalone *sa = NULL;
    struct controller *ctl = NULL;
    if (cfg) {
        sa = standalone_start(p.base, p.dp, cfg, err, sizeof(err));
        if (!sa) {
            fprintf(stderr, "holdfast: %s: %s\n", opt.config_file, err);
            return EXIT_USAGE;
        }
        admin_add_metrics(admin, standalone_metrics, sa);
    } else {
        ctl = controller_start(p.base, p.dp, &opt.k8s, err, sizeof(err));
        if (!ctl) {
            fprintf(stderr, "holdfast: %s\n", err);
            return EXIT_USAGE;
        }
        admin_add_metrics(admin, controller_metrics, ctl);
        admin_set_ready_check(admin, controller_ready, ctl);
        admin_set_health_check(admin, controller_health, ctl);
        p.ctl = ctl;
    }
    if (dataplane_start(p.dp, err, sizeof(err)) < 0) {
        fprintf(stderr, "holdfast: %s\n", err);
        return 1;
    }
    struct event *sigterm = evsignal_new(p.base, SIGTERM, on_term, &p);
    struct event *sigint = evsignal_new(p.base, SIGINT, on_term, &p);
    p.drain_poll = evtimer_new(p.base, on_drain_poll, &p);
    p.drain_start = evtimer_new(p.base, on_drain_start, &p);
    p.ready_check = evtimer_new(p.base, on_ready_check, &p);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    log_info("holdfast starting",
             "version=%s mode=%s config=%s workers=%d admin=%s "
             "open_files_limit=%d",
             HOLDFAST_VERSION, cfg ? "standalone" : "kubernetes", opt.config_file, opt.workers,
             opt.admin.text, fds);
    on_ready_check(-1, 0, &p);

    event_base_dispatch(p.base);

    dataplane_stop(p.dp);
    event_free(sigterm);
    event_free(sigint);
    event_free(p.drain_poll);
    event_free(p.drain_start);
    event_free(p.ready_check);
    standalone_free(sa);
    controller_free(ctl);
    admin_free(admin);
    dataplane_free(p.dp);
    event_base_free(p.base);
    config_free(cfg);
    log_info("stopped", NULL);
    return 0;
}

/* holdfast restore --all | --namespace NS [NAME] */
static int cmd_restore(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"all", no_argument, NULL, 'A'},
        {"namespace", required_argument, NULL, 'n'},
        {"kubeconfig", required_argument, NULL, 'k'},
        {"timeout", required_argument, NULL, 't'},
        {"insecure-skip-tls-verify", no_argument, NULL, 'i'},
        {"log-level", required_argument, NULL, 'l'},
        {"uninstall", no_argument, NULL, 'U'},
        {"lease-name", required_argument, NULL, 'L'},
        {"lease-namespace", required_argument, NULL, 'N'},
        {NULL, 0, NULL, 0},
    };
    struct restore_opts o = {.timeout_s = 120};
    bool all = false, lease_flag = false;
    enum log_level level = LOG_INFO;
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        unsigned long v;
        switch (c) {
        case 'A':
            all = true;
            break;
        case 'n':
            o.namespace_ = optarg;
            break;
        case 'k':
            o.kubeconfig = optarg;
            break;
        case 't':
            if (parse_uint(optarg, 86400, &v) < 0 || v == 0)
                return fail_usage("--timeout: \"%s\" is not a number of seconds", optarg);
            o.timeout_s = (unsigned)v;
            break;
        case 'i':
            o.insecure_skip_tls_verify = true;
            break;
        case 'U':
            o.uninstall = true;
            break;
        case 'L':
            o.lease_name = optarg;
            lease_flag = true;
            break;
        case 'N':
            o.lease_namespace = optarg;
            lease_flag = true;
            break;
        case 'l':
            if (log_parse_level(optarg, &level) < 0)
                return fail_usage("--log-level: \"%s\" is not one of debug, info, warn, error",
                                  optarg);
            break;
        case ':':
            return fail_usage("%s needs a value", argv[optind - 1]);
        default:
            return fail_usage("unknown flag %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        o.name = argv[optind++];
    if (optind < argc)
        return fail_usage("unexpected argument \"%s\"", argv[optind]);
    if (all == (o.namespace_ != NULL))
        return fail_usage("%s", "restore needs --all, or --namespace NS [NAME]");
    if (!o.kubeconfig)
        o.kubeconfig = env_default("KUBECONFIG");
    if (!o.lease_namespace)
        o.lease_namespace = env_default("POD_NAMESPACE");
    if (lease_flag && !o.uninstall)
        return fail_usage("%s", "--lease-name and --lease-namespace go with --uninstall");
    log_set_level(level);
    char err[1024] = "";
    int rc = restore_run(&o, err, sizeof(err));
    if (rc == 2)
        fprintf(stderr, "holdfast: %s\n", err);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("holdfast %s\n", HOLDFAST_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 1, argv + 1);
    if (strcmp(argv[1], "restore") == 0)
        return cmd_restore(argc - 1, argv + 1);
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "holdfast: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
