/*
 * main: the `holdfast` commands and the wiring of one process: the data plane's workers, one
 * control plane (standalone/ with --config, else controller/), the admin endpoint, and on the
 * control thread's event loop the signals, the shutdown delay and the graceful drain.
 *
 *   holdfast run --config FILE [flags]     standalone mode
 *   holdfast run [flags]                   Kubernetes mode
 *   holdfast restore --all | --namespace NS [NAME] [flags]
 *   holdfast version | help
 *
 * The flags, their environment variables and defaults are in process/flags.c. A bad flag or
 * config file exits 2 with one message.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/log.h"
#include "controller/controller.h"
#include "controller/restore.h"
#include "process/admin.h"
#include "process/flags.h"
#include "resolver/worker.h"
#include "standalone/config.h"
#include "standalone/standalone.h"

#define DRAIN_POLL_MS 50

/* The running process, as the control thread's callbacks see it. */
struct process {
    struct event_base *base;
    struct dataplane *dp;
    struct controller *ctl; /* Kubernetes mode, else NULL */
    bool lease_done;        /* the leader Lease was handed back (or there was none) */
    struct options *opt;
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
    atomic_store(&p->dp->stopping, true); /* /readyz fails from now on */
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
    struct options opt = {0};
    int rc = flags_parse_run(argc, argv, &opt);
    if (rc)
        return rc;
    log_set_level(opt.log_level);

    struct process p = {.opt = &opt, .started_ns = mono_ns()};
    char err[1024] = "";
    struct config *cfg = NULL;
    struct dp_limits limits;
    dp_limits_default(&limits);
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
    struct options opt = {0};
    int rc = flags_parse_restore(argc, argv, &opt);
    if (rc)
        return rc;
    log_set_level(opt.restore_log_level);
    char err[1024] = "";
    rc = restore_run(&opt.restore, err, sizeof(err));
    if (rc == 2)
        fprintf(stderr, "holdfast: %s\n", err);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        flags_usage(stderr);
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
        flags_usage(stdout);
        return 0;
    }
    fprintf(stderr, "holdfast: unknown command \"%s\"\n", argv[1]);
    flags_usage(stderr);
    return EXIT_USAGE;
}
