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
#include "resolver/worker.h"

#define EXIT_USAGE 2
#define DRAIN_POLL_MS 50

struct run_options {
    const char *config_file;
    int workers;
    struct addr admin;
    enum log_level log_level;
    unsigned drain_timeout_s;
};

/* The running process, as the control thread's callbacks see it. */
struct process {
    struct event_base *base;
    struct dataplane *dp;
    struct run_options *opt;
    struct event *drain_poll;
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
            "usage: holdfast run --config FILE [--workers N] [--admin-listen HOST:PORT]\n"
            "                    [--log-level debug|info|warn|error] [--drain-timeout SECONDS]\n"
            "       holdfast version\n");
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

static int parse_run_options(int argc, char **argv, struct run_options *opt)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"workers", required_argument, NULL, 'w'},
        {"admin-listen", required_argument, NULL, 'a'},
        {"log-level", required_argument, NULL, 'l'},
        {"drain-timeout", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    opt->workers = ncpu > 0 ? (int)ncpu : 1;
    opt->log_level = LOG_INFO;
    opt->drain_timeout_s = 30;
    char err[256];
    addr_parse("0.0.0.0:8013", &opt->admin, err, sizeof(err));
    opterr = 0;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        unsigned long v;
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
    if (!opt->config_file)
        return fail_usage("%s", "run needs --config FILE (Kubernetes mode is not built yet)");
    return 0;
}

/* ---- drain and readiness ---- */

static void on_drain_poll(evutil_socket_t fd, short what, void *arg)
{
    struct process *p = arg;
    long open = dataplane_open_connections(p->dp);
    if (open == 0) {
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

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct process *p = arg;
    if (p->draining) {
        log_warn("second signal: stopping now", "signal=%d", (int)sig);
        event_base_loopbreak(p->base);
        return;
    }
    p->draining = true;
    log_info("draining: listeners closed, finishing held and relayed connections",
             "signal=%d drain_timeout_s=%u open_connections=%ld", (int)sig, p->opt->drain_timeout_s,
             dataplane_open_connections(p->dp));
    dataplane_drain(p->dp);
    p->drain_deadline_ns = mono_ns() + (uint64_t)p->opt->drain_timeout_s * 1000000000ull;
    on_drain_poll(-1, 0, p);
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
    char err[1024];
    struct config *cfg = NULL;
    if (config_load(opt.config_file, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "holdfast: %s\n", err);
        return EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN);
    int fds = raise_fd_limit();

    p.dp = dataplane_new(opt.workers, &cfg->limits);
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
    struct standalone *sa = standalone_start(p.base, p.dp, cfg, err, sizeof(err));
    if (!sa) {
        fprintf(stderr, "holdfast: %s: %s\n", opt.config_file, err);
        return EXIT_USAGE;
    }
    admin_add_metrics(admin, standalone_metrics, sa);
    if (dataplane_start(p.dp, err, sizeof(err)) < 0) {
        fprintf(stderr, "holdfast: %s\n", err);
        return 1;
    }
    struct event *sigterm = evsignal_new(p.base, SIGTERM, on_term, &p);
    struct event *sigint = evsignal_new(p.base, SIGINT, on_term, &p);
    p.drain_poll = evtimer_new(p.base, on_drain_poll, &p);
    p.ready_check = evtimer_new(p.base, on_ready_check, &p);
    evsignal_add(sigterm, NULL);
    evsignal_add(sigint, NULL);
    log_info("holdfast starting",
             "version=%s config=%s workers=%d admin=%s services=%zu "
             "open_files_limit=%d",
             HOLDFAST_VERSION, opt.config_file, opt.workers, opt.admin.text, cfg->n_services, fds);
    on_ready_check(-1, 0, &p);

    event_base_dispatch(p.base);

    dataplane_stop(p.dp);
    event_free(sigterm);
    event_free(sigint);
    event_free(p.drain_poll);
    event_free(p.ready_check);
    standalone_free(sa);
    admin_free(admin);
    dataplane_free(p.dp);
    event_base_free(p.base);
    config_free(cfg);
    log_info("stopped", NULL);
    return 0;
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
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "holdfast: unknown command \"%s\"\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
