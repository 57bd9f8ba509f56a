/*
 * flags: the flag table of `holdfast run` and `holdfast restore`, its parser and the usage text
 * made from it. See flags.h.
 *
 * Flags marked AT_ONCE are checked as getopt reads them, so the first bad one on the command
 * line is the one reported; the others, and every value from the environment or a default, are
 * set after the command line was read, in table order.
 */
#include "process/flags.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/duration.h"
#include "controller/defaults.h"

#define STR_(x) #x
#define STR(x) STR_(x)

/* Which command and mode a flag belongs to. */
enum {
    MODE_STANDALONE = 1 << 0, /* holdfast run --config FILE */
    MODE_KUBERNETES = 1 << 1, /* holdfast run without --config */
    MODE_RUN = MODE_STANDALONE | MODE_KUBERNETES,
    MODE_RESTORE = 1 << 2, /* holdfast restore */
};

/* Sets the option from value (NULL: neither flag, variable nor default gave one). `name` is what
 * a message calls the value: "--flag", or the environment variable for some. Returns 0 or
 * EXIT_USAGE after printing the message and the usage. */
typedef int (*flag_set_fn)(struct options *o, const char *value, const char *name);

struct flag {
    const char *name;     /* the long flag without "--", or NULL: environment only */
    const char *arg;      /* the value's placeholder in the usage, or NULL: takes no value */
    const char *env;      /* environment variable read when the flag is not given, or NULL */
    const char *def;      /* the default, given to set like a value, or NULL */
    const char *def_text; /* the default in words when it is derived (def is NULL), or NULL */
    const char *help;
    unsigned modes;
    unsigned how;
    flag_set_fn set;
};

enum {
    AT_ONCE = 1 << 0,   /* checked as the command line is read */
    ENV_NAMED = 1 << 1, /* a bad value from the environment is reported under its name */
};

__attribute__((format(printf, 1, 2))) static int fail_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "holdfast: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    flags_usage(stderr);
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

/* A duration in milliseconds, min_ms..max_ms; 0 with nothing set when value is NULL. */
static int parse_duration_ms(const char *value, const char *name, uint64_t min_ms, uint64_t max_ms,
                             uint64_t *out_ms)
{
    *out_ms = 0;
    if (!value)
        return 0;
    int64_t ns;
    char err[256] = "";
    if (duration_parse(value, &ns, err, sizeof(err)) < 0)
        return fail_usage("%s: %s", name, err);
    if (ns < 0 || (uint64_t)ns / 1000000 < min_ms || (uint64_t)ns / 1000000 > max_ms)
        return fail_usage("%s: \"%s\" is out of range (%llu ms to %llu s)", name, value,
                          (unsigned long long)min_ms, (unsigned long long)max_ms / 1000);
    *out_ms = (uint64_t)ns / 1000000;
    return 0;
}

/* ---- the setters, one per option ---- */

static int set_help(struct options *o, const char *value, const char *name)
{
    flags_usage(stdout);
    exit(0);
}

static int set_config(struct options *o, const char *value, const char *name)
{
    o->config_file = value;
    return 0;
}

static int set_workers(struct options *o, const char *value, const char *name)
{
    unsigned long v;
    if (!value) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        o->workers = ncpu > 0 ? (int)ncpu : 1;
        return 0;
    }
    if (parse_uint(value, 256, &v) < 0 || v == 0)
        return fail_usage("%s: \"%s\" is not a number from 1 to 256", name, value);
    o->workers = (int)v;
    return 0;
}

static int set_admin_listen(struct options *o, const char *value, const char *name)
{
    char err[256];
    if (!value)
        return 0; /* flags_parse_run puts it on the bind address */
    if (addr_parse(value, &o->admin, err, sizeof(err)) < 0)
        return fail_usage("%s: %s", name, err);
    o->admin_given = true;
    return 0;
}

static int log_level(enum log_level *out, const char *value, const char *name)
{
    if (value && log_parse_level(value, out) < 0)
        return fail_usage("%s: \"%s\" is not one of debug, info, warn, error", name, value);
    return 0;
}

static int set_log_level(struct options *o, const char *value, const char *name)
{
    return log_level(&o->log_level, value, name);
}

static int set_drain_timeout(struct options *o, const char *value, const char *name)
{
    unsigned long v;
    if (value && parse_uint(value, 86400, &v) < 0)
        return fail_usage("%s: \"%s\" is not a number of seconds (0-86400)", name, value);
    o->drain_timeout_s = value ? (unsigned)v : 0;
    return 0;
}

static int set_shutdown_delay(struct options *o, const char *value, const char *name)
{
    unsigned long v;
    if (value && parse_uint(value, 3600, &v) < 0)
        return fail_usage("%s: \"%s\" is not a number of seconds (0-3600)", name, value);
    o->shutdown_delay_s = value ? (unsigned)v : 0;
    return 0;
}

static int set_pace_held(struct options *o, const char *value, const char *name)
{
    if (parse_bool(value, &o->pace_held) < 0)
        return fail_usage("%s: \"%s\" is not true or false", name, value);
    return 0;
}

/* The Kubernetes mode's text options: kept as given (borrowed from argv or the environment). */
#define SET_TEXT(fn, field)                                                                        \
    static int fn(struct options *o, const char *value, const char *name)                          \
    {                                                                                              \
        o->field = value;                                                                          \
        return 0;                                                                                  \
    }
SET_TEXT(set_kubeconfig, k8s.kubeconfig)
SET_TEXT(set_namespace, k8s.namespace_)
SET_TEXT(set_resolver_service, k8s.resolver_service)
SET_TEXT(set_resolver_namespace, k8s.resolver_namespace)
SET_TEXT(set_pod_ip, k8s.pod_ip)
SET_TEXT(set_pod_name, k8s.pod_name)
SET_TEXT(set_node_name, k8s.node_name)
SET_TEXT(set_prometheus_address, k8s.prometheus_address)
SET_TEXT(set_prometheus_authorization, k8s.prometheus_authorization)
SET_TEXT(set_restore_namespace, restore.namespace_)
SET_TEXT(set_restore_kubeconfig, restore.kubeconfig)
SET_TEXT(set_lease_name, restore.lease_name)
SET_TEXT(set_lease_namespace, restore.lease_namespace)

static int set_bind_address(struct options *o, const char *value, const char *name)
{
    char err[256], text[96];
    struct addr probe;
    snprintf(o->bind_address, sizeof(o->bind_address), "%s", value);
    o->k8s.bind_address = o->bind_address;
    addr_format(text, sizeof(text), o->bind_address, 0);
    if (addr_parse(text, &probe, err, sizeof(err)) < 0)
        return fail_usage("%s: \"%s\" is not an IP address", name, o->bind_address);
    return 0;
}

static int set_port_range(struct options *o, const char *value, const char *name)
{
    unsigned a, b;
    char extra;
    if (sscanf(value, "%u-%u%c", &a, &b, &extra) != 2 || a == 0 || a > b || b > 65535)
        return fail_usage("%s: \"%s\" is not A-B with 1 <= A <= B <= 65535", name, value);
    o->k8s.port_min = a;
    o->k8s.port_max = b;
    return 0;
}

static int set_api_qps(struct options *o, const char *value, const char *name)
{
    if (parse_rate(value, &o->k8s.api_qps) < 0)
        return fail_usage("%s: \"%s\" is not a number from 0.1 to 10000", name, value);
    return 0;
}

static int set_api_burst(struct options *o, const char *value, const char *name)
{
    unsigned long v;
    if (parse_uint(value, 100000, &v) < 0 || v == 0)
        return fail_usage("%s: \"%s\" is not a number from 1 to 100000", name, value);
    o->k8s.api_burst = (int)v;
    return 0;
}

static int set_prometheus_max(struct options *o, const char *value, const char *name)
{
    unsigned long v;
    if (parse_uint(value, 1000, &v) < 0 || v == 0)
        return fail_usage("%s: \"%s\" is not a number from 1 to 1000", name, value);
    o->k8s.prometheus_max_inflight = (unsigned)v;
    return 0;
}

static int set_polling_interval(struct options *o, const char *value, const char *name)
{
    int64_t ns = 0;
    char err[256] = "";
    if (duration_parse(value, &ns, err, sizeof(err)) < 0 || ns < 100000000)
        return fail_usage("%s: %s", name,
                          ns < 100000000 && !err[0] ? "must be at least 100ms" : err);
    o->k8s.polling_interval_ms = (unsigned)(ns / 1000000);
    return 0;
}

static int set_shared_port(struct options *o, const char *value, const char *name)
{
    unsigned long v;
    if (parse_uint(value, 65535, &v) < 0)
        return fail_usage("%s: \"%s\" is not a port (0 = none)", name, value);
    o->k8s.shared_port = (unsigned)v;
    return 0;
}

static int set_leader_elect(struct options *o, const char *value, const char *name)
{
    if (parse_bool(value, &o->k8s.leader_elect) < 0)
        return fail_usage("%s: \"%s\" is not true or false", name, value);
    return 0;
}

static int set_api_timeout(struct options *o, const char *value, const char *name)
{
    uint64_t ms;
    if (parse_duration_ms(value, name, 100, 3600000, &ms))
        return EXIT_USAGE;
    o->k8s.api_timeout_ms = (long)ms;
    return 0;
}

static int set_status_heartbeat(struct options *o, const char *value, const char *name)
{
    uint64_t ms;
    if (parse_duration_ms(value, name, 1000, 86400000, &ms))
        return EXIT_USAGE;
    o->k8s.status_heartbeat_s = (unsigned)(ms / 1000);
    return 0;
}

static int set_liveness_bound(struct options *o, const char *value, const char *name)
{
    uint64_t ms;
    if (parse_duration_ms(value, name, 1000, 86400000, &ms))
        return EXIT_USAGE;
    o->k8s.liveness_bound_ms = (unsigned)ms;
    return 0;
}

static int set_watch_targets(struct options *o, const char *value, const char *name)
{
    bool on;
    if (parse_bool(value, &on) < 0)
        return fail_usage("%s: \"%s\" is not true or false", name, value);
    o->k8s.no_target_watch = !on;
    return 0;
}

static int set_probe_timeout(struct options *o, const char *value, const char *name)
{
    uint64_t ms;
    if (parse_duration_ms(value, name, 500, 3600000, &ms))
        return EXIT_USAGE;
    o->k8s.scale_down_probe_timeout_ms = (unsigned)ms;
    return 0;
}

static int set_grace(struct options *o, const char *value, const char *name)
{
    uint64_t ms;
    if (parse_duration_ms(value, name, 0, 3600000, &ms))
        return EXIT_USAGE;
    o->k8s.scale_down_grace_ms = (unsigned)ms;
    return 0;
}

static int set_admin_port(struct options *o, const char *value, const char *name)
{
    unsigned long v;
    if (parse_uint(value, 65535, &v) < 0 || v == 0)
        return fail_usage("%s: \"%s\" is not a port", name, value);
    o->admin_port = (unsigned)v;
    return 0;
}

static int set_insecure(struct options *o, const char *value, const char *name)
{
    o->k8s.insecure_skip_tls_verify = true;
    return 0;
}

static int set_restore_all(struct options *o, const char *value, const char *name)
{
    o->restore_all = true;
    return 0;
}

static int set_restore_timeout(struct options *o, const char *value, const char *name)
{
    unsigned long v;
    if (parse_uint(value, 86400, &v) < 0 || v == 0)
        return fail_usage("%s: \"%s\" is not a number of seconds", name, value);
    o->restore.timeout_s = (unsigned)v;
    return 0;
}

static int set_restore_insecure(struct options *o, const char *value, const char *name)
{
    o->restore.insecure_skip_tls_verify = true;
    return 0;
}

static int set_restore_log_level(struct options *o, const char *value, const char *name)
{
    return log_level(&o->restore_log_level, value, name);
}

static int set_uninstall(struct options *o, const char *value, const char *name)
{
    o->restore.uninstall = true;
    return 0;
}

/* ---- the table ---- */

#define MS(x) STR(x) "ms"

/* In the order values are set after the command line is read, which is also the usage's. */
static const struct flag flags[] = {
    /* holdfast run, both modes */
    {"help", NULL, NULL, NULL, NULL, "this text", MODE_RUN | MODE_RESTORE, AT_ONCE, set_help},
    {"config", "FILE", NULL, NULL, NULL,
     "standalone mode: the services, listeners and limits (JSON, docs/standalone-config.md)",
     MODE_STANDALONE, AT_ONCE, set_config},
    {"workers", "N", NULL, NULL, "one per CPU", "data-plane worker threads, 1 to 256", MODE_RUN,
     AT_ONCE, set_workers},
    {"admin-listen", "HOST:PORT", NULL, NULL,
     "0.0.0.0:" STR(ADMIN_DEFAULT_PORT) "; Kubernetes mode: --bind-address, --admin-port",
     "the admin endpoint: /metrics, /healthz, /readyz", MODE_RUN, AT_ONCE, set_admin_listen},
    {"log-level", "debug|info|warn|error", NULL, "info", NULL, NULL, MODE_RUN, AT_ONCE,
     set_log_level},
    {"drain-timeout", "SECONDS", NULL, "30", NULL,
     "after SIGTERM, how long held and relayed connections may finish", MODE_RUN, AT_ONCE,
     set_drain_timeout},
    {"shutdown-delay", "SECONDS", NULL, "0", NULL,
     "keep accepting after SIGTERM, not ready, for this long", MODE_RUN, AT_ONCE,
     set_shutdown_delay},
    {"pace-held", "true|false", "HOLDFAST_PACE_HELD", "true", NULL,
     "release held connections to a pod through a window that grows as it answers (false: all "
     "at once)",
     MODE_RUN, 0, set_pace_held},
    /* holdfast run, Kubernetes mode */
    {"kubeconfig", "FILE", "KUBECONFIG", NULL, "in-cluster", NULL, MODE_KUBERNETES, AT_ONCE,
     set_kubeconfig},
    {"namespace", "NS", "HOLDFAST_NAMESPACE", NULL, "all namespaces",
     "watch ElastiServices in this namespace only", MODE_KUBERNETES, AT_ONCE, set_namespace},
    {"resolver-service", "NAME", "HOLDFAST_RESOLVER_SERVICE", NULL, NULL,
     "holdfast's own Service (its slices list the replicas); none: this process alone",
     MODE_KUBERNETES, AT_ONCE, set_resolver_service},
    {"resolver-namespace", "NS", "POD_NAMESPACE", NULL, NULL, "the namespace of --resolver-service",
     MODE_KUBERNETES, AT_ONCE, set_resolver_namespace},
    {"pod-ip", "IP", "POD_IP", NULL, NULL, "this replica's IP", MODE_KUBERNETES, AT_ONCE,
     set_pod_ip},
    {"pod-name", "NAME", "POD_NAME", NULL, NULL, "this replica's name (leader identity, Events)",
     MODE_KUBERNETES, AT_ONCE, set_pod_name},
    {"node-name", "NAME", "NODE_NAME", NULL, NULL, "this replica's node", MODE_KUBERNETES, AT_ONCE,
     set_node_name},
    {"prometheus-address", "URL", "PROMETHEUS_TRIGGER_SERVER_ADDRESS", NULL, NULL,
     "the default serverAddress of Prometheus triggers", MODE_KUBERNETES, AT_ONCE,
     set_prometheus_address},
    {NULL, "HEADER", "PROMETHEUS_TRIGGER_AUTHORIZATION_HEADER", NULL, NULL,
     "the default Authorization header of Prometheus triggers (environment only)", MODE_KUBERNETES,
     0, set_prometheus_authorization},
    {"bind-address", "IP", "HOLDFAST_BIND_ADDRESS", CONTROLLER_DEFAULT_BIND_ADDRESS, NULL,
     "the IP every resolver port (and the admin endpoint) binds", MODE_KUBERNETES, 0,
     set_bind_address},
    {"proxy-port-range", "A-B", "HOLDFAST_PROXY_PORT_RANGE",
     STR(CONTROLLER_DEFAULT_PORT_MIN) "-" STR(CONTROLLER_DEFAULT_PORT_MAX), NULL,
     "the ports resolver listeners are allocated from", MODE_KUBERNETES, 0, set_port_range},
    {"kube-api-qps", "N", "HOLDFAST_KUBE_API_QPS", STR(CONTROLLER_DEFAULT_API_QPS), NULL,
     "API requests per second, 0.1 to 10000", MODE_KUBERNETES, AT_ONCE | ENV_NAMED, set_api_qps},
    {"kube-api-burst", "N", "HOLDFAST_KUBE_API_BURST", STR(CONTROLLER_DEFAULT_API_BURST), NULL,
     "API requests above the rate in a burst, 1 to 100000", MODE_KUBERNETES, AT_ONCE | ENV_NAMED,
     set_api_burst},
    {"prometheus-max-concurrent", "N", "HOLDFAST_PROMETHEUS_MAX_CONCURRENT",
     STR(CONTROLLER_DEFAULT_PROMETHEUS_MAX_INFLIGHT), NULL,
     "trigger queries in flight to one Prometheus server at a time, 1 to 1000", MODE_KUBERNETES,
     AT_ONCE | ENV_NAMED, set_prometheus_max},
    {"polling-interval", "DURATION", "HOLDFAST_POLLING_INTERVAL",
     MS(CONTROLLER_DEFAULT_POLLING_INTERVAL_MS), NULL,
     "scale-down checks (jittered), at least 100ms", MODE_KUBERNETES, 0, set_polling_interval},
    {"shared-port", "PORT", "HOLDFAST_SHARED_PORT", STR(CONTROLLER_DEFAULT_SHARED_PORT), NULL,
     "the Host-routed shared port, 0 = none", MODE_KUBERNETES, 0, set_shared_port},
    {"leader-elect", "true|false", "HOLDFAST_LEADER_ELECT", "true", NULL,
     "false: this replica always leads", MODE_KUBERNETES, 0, set_leader_elect},
    {"kube-api-timeout", "DURATION", "HOLDFAST_KUBE_API_TIMEOUT",
     MS(CONTROLLER_DEFAULT_API_TIMEOUT_MS), NULL, "the deadline of every API call", MODE_KUBERNETES,
     0, set_api_timeout},
    {"status-heartbeat", "DURATION", "HOLDFAST_STATUS_HEARTBEAT", NULL, "derived",
     "refresh status.lastReconciledTime when it is older", MODE_KUBERNETES, 0,
     set_status_heartbeat},
    {"liveness-bound", "DURATION", "HOLDFAST_LIVENESS_BOUND", NULL, "derived",
     "/healthz fails when no evaluation round completed for this long", MODE_KUBERNETES, 0,
     set_liveness_bound},
    {"watch-targets", "true|false", "HOLDFAST_WATCH_TARGETS", "true", NULL,
     "watch Deployments, StatefulSets and Rollouts (false: hand scaling seen by the polls)",
     MODE_KUBERNETES, 0, set_watch_targets},
    {"scale-down-probe-timeout", "DURATION", "HOLDFAST_SCALE_DOWN_PROBE_TIMEOUT",
     MS(CONTROLLER_DEFAULT_SCALE_DOWN_PROBE_TIMEOUT_MS), NULL,
     "the switch to zero gives up unless the data path reaches holdfast by then", MODE_KUBERNETES,
     0, set_probe_timeout},
    {"scale-down-grace-period", "DURATION", "HOLDFAST_SCALE_DOWN_GRACE_PERIOD",
     MS(CONTROLLER_DEFAULT_SCALE_DOWN_GRACE_MS), NULL,
     "Services with no HTTP port: the wait after the resolver slice is cached", MODE_KUBERNETES, 0,
     set_grace},
    {"admin-port", "PORT", NULL, STR(ADMIN_DEFAULT_PORT), NULL,
     "the admin endpoint on the bind address (unless --admin-listen)", MODE_KUBERNETES, AT_ONCE,
     set_admin_port},
    {"insecure-skip-tls-verify", NULL, NULL, NULL, NULL,
     "do not verify the API server's certificate (logged at every start)", MODE_KUBERNETES, AT_ONCE,
     set_insecure},
    /* holdfast restore */
    {"all", NULL, NULL, NULL, NULL, "every ElastiService in every namespace", MODE_RESTORE, AT_ONCE,
     set_restore_all},
    {"namespace", "NS", NULL, NULL, NULL, "the ElastiServices of this namespace (NAME: that one)",
     MODE_RESTORE, AT_ONCE, set_restore_namespace},
    {"kubeconfig", "FILE", "KUBECONFIG", NULL, "in-cluster", NULL, MODE_RESTORE, AT_ONCE,
     set_restore_kubeconfig},
    {"timeout", "SECONDS", NULL, "120", NULL, "give up after this long", MODE_RESTORE, AT_ONCE,
     set_restore_timeout},
    {"insecure-skip-tls-verify", NULL, NULL, NULL, NULL,
     "do not verify the API server's certificate", MODE_RESTORE, AT_ONCE, set_restore_insecure},
    {"log-level", "debug|info|warn|error", NULL, "info", NULL, NULL, MODE_RESTORE, AT_ONCE,
     set_restore_log_level},
    {"uninstall", NULL, NULL, NULL, NULL,
     "the uninstall hook: take the leader Lease first, then remove holdfast's finalizers",
     MODE_RESTORE, AT_ONCE, set_uninstall},
    {"lease-name", "NAME", NULL, NULL, CONTROLLER_DEFAULT_LEASE_NAME,
     "with --uninstall: the leader Lease", MODE_RESTORE, AT_ONCE, set_lease_name},
    {"lease-namespace", "NS", "POD_NAMESPACE", NULL, "default",
     "with --uninstall: the leader Lease's namespace", MODE_RESTORE, AT_ONCE, set_lease_namespace},
};

#define NFLAGS (sizeof(flags) / sizeof(flags[0]))

/* ---- usage ---- */

/* A default as the usage shows it: "30000ms" as "30s". */
static void show_default(const char *def, char *buf, size_t len)
{
    char *end;
    unsigned long ms = strtoul(def, &end, 10);
    if (end != def && !strcmp(end, "ms") && ms >= 1000 && ms % 1000 == 0)
        snprintf(buf, len, "%lus", ms / 1000);
    else
        snprintf(buf, len, "%s", def);
}

/* The flags that belong to exactly `mode`, each with its variable, default and help. */
static void usage_section(FILE *out, const char *title, unsigned mode)
{
    fprintf(out, "\n%s\n", title);
    for (size_t i = 0; i < NFLAGS; i++) {
        const struct flag *f = &flags[i];
        if (f->modes != mode)
            continue;
        char def[64] = "";
        if (f->def)
            show_default(f->def, def, sizeof(def));
        const char *shown = f->def ? def : f->def_text;
        if (f->name)
            fprintf(out, "  --%s%s%s", f->name, f->arg ? " " : "", f->arg ? f->arg : "");
        else
            fprintf(out, "  %s=%s", f->env, f->arg);
        if (f->name && f->env)
            fprintf(out, " [%s%s%s]", f->env, shown ? "; default " : "", shown ? shown : "");
        else if (shown)
            fprintf(out, " [default %s]", shown);
        fprintf(out, "\n");
        if (f->help)
            fprintf(out, "      %s\n", f->help);
    }
}

void flags_usage(FILE *out)
{
    fprintf(out, "usage: holdfast run --config FILE [run flags]            standalone mode\n"
                 "       holdfast run [kubernetes flags] [run flags]       Kubernetes mode\n"
                 "       holdfast restore --all | --namespace NS [NAME] [restore flags]\n"
                 "                                                         back to serve mode\n"
                 "       holdfast version\n"
                 "       holdfast help | holdfast run --help\n"
                 "A flag not given takes its environment variable (in brackets), else its "
                 "default.\n");
    usage_section(out, "run flags (both modes):", MODE_RUN);
    usage_section(out, "standalone mode:", MODE_STANDALONE);
    usage_section(out, "kubernetes flags:", MODE_KUBERNETES);
    usage_section(out, "restore flags:", MODE_RESTORE);
}

/* ---- parsing ---- */

/* Reads argv with getopt_long over the flags of `mode`: AT_ONCE flags are set at once, the
 * others' values kept in given[] for set_rest. Returns 0 or EXIT_USAGE. */
static int read_command_line(int argc, char **argv, unsigned mode, struct options *o,
                             const char **given)
{
    struct option longopts[NFLAGS + 1];
    size_t n = 0;
    for (size_t i = 0; i < NFLAGS; i++)
        if (flags[i].name && (flags[i].modes & mode))
            longopts[n++] = (struct option){
                flags[i].name, flags[i].arg ? required_argument : no_argument, NULL, 256 + (int)i};
    longopts[n] = (struct option){NULL, 0, NULL, 0};
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        if (c == ':')
            return fail_usage("%s needs a value", argv[optind - 1]);
        if (c < 256)
            return fail_usage("unknown flag %s", argv[optind - 1]);
        const struct flag *f = &flags[c - 256];
        char name[64];
        snprintf(name, sizeof(name), "--%s", f->name);
        /* a switch is given as "", so it counts as given */
        given[c - 256] = f->arg ? optarg : "";
        if ((f->how & AT_ONCE) && f->set(o, f->arg ? optarg : NULL, name))
            return EXIT_USAGE;
    }
    return 0;
}

/* Sets every flag of `mode` that was not set at once: from the command line, the environment
 * or the default, in table order. A setter sees NULL only when its flag has no default. */
static int set_rest(unsigned mode, struct options *o, const char **given)
{
    for (size_t i = 0; i < NFLAGS; i++) {
        const struct flag *f = &flags[i];
        if (!(f->modes & mode) || (given[i] && (f->how & AT_ONCE)) || (!f->arg && !given[i]))
            continue; /* set already, or a switch not given */
        char name[64];
        snprintf(name, sizeof(name), f->name ? "--%s" : "%s", f->name ? f->name : f->env);
        const char *value = given[i];
        if (!value && f->env) {
            const char *v = getenv(f->env);
            value = v && *v ? v : NULL;
            if (value && (f->how & ENV_NAMED))
                snprintf(name, sizeof(name), "%s", f->env);
        }
        if (!value)
            value = f->def;
        if (f->set(o, value, name))
            return EXIT_USAGE;
    }
    return 0;
}

static bool given_in(const char **given, unsigned mode)
{
    for (size_t i = 0; i < NFLAGS; i++)
        if (given[i] && flags[i].modes == mode)
            return true;
    return false;
}

int flags_parse_run(int argc, char **argv, struct options *opt)
{
    const char *given[NFLAGS] = {0};
    if (read_command_line(argc, argv, MODE_RUN, opt, given))
        return EXIT_USAGE;
    if (optind < argc)
        return fail_usage("unexpected argument \"%s\"", argv[optind]);
    if (opt->config_file && given_in(given, MODE_KUBERNETES))
        return fail_usage("%s", "--config (standalone mode) does not take Kubernetes flags");
    if (set_rest(opt->config_file ? MODE_STANDALONE : MODE_RUN, opt, given))
        return EXIT_USAGE;
    if (!opt->admin_given) {
        char err[256], text[96];
        const char *bind =
            opt->bind_address[0] ? opt->bind_address : CONTROLLER_DEFAULT_BIND_ADDRESS;
        addr_format(text, sizeof(text), bind,
                    opt->admin_port ? opt->admin_port : ADMIN_DEFAULT_PORT);
        addr_parse(text, &opt->admin, err, sizeof(err));
    }
    return 0;
}

int flags_parse_restore(int argc, char **argv, struct options *opt)
{
    const char *given[NFLAGS] = {0};
    if (read_command_line(argc, argv, MODE_RESTORE, opt, given))
        return EXIT_USAGE;
    struct restore_opts *o = &opt->restore;
    if (optind < argc)
        o->name = argv[optind++];
    if (optind < argc)
        return fail_usage("unexpected argument \"%s\"", argv[optind]);
    if (opt->restore_all == (o->namespace_ != NULL))
        return fail_usage("%s", "restore needs --all, or --namespace NS [NAME]");
    if (set_rest(MODE_RESTORE, opt, given))
        return EXIT_USAGE;
    bool lease_flag = false;
    for (size_t i = 0; i < NFLAGS; i++)
        if (given[i] && (flags[i].set == set_lease_name || flags[i].set == set_lease_namespace))
            lease_flag = true;
    if (lease_flag && !o->uninstall)
        return fail_usage("%s", "--lease-name and --lease-namespace go with --uninstall");
    return 0;
}
