/*
 * main: the `holdfast` commands and the wiring of one process: the data plane's workers, one
 * control plane (standalone/ with --config, else controller/) and the admin endpoint on the
 * control thread's event loop, and the signals, shutdown delay and drain (process/lifecycle.c).
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

#include "common/clock.h"
#include "common/log.h"
#include "controller/controller.h"
#include "controller/restore.h"
#include "process/admin.h"
#include "process/flags.h"
#include "process/lifecycle.h"
#include "resolver/dataplane.h"
#include "standalone/config.h"
#include "standalone/standalone.h"

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

    uint64_t started_ns = clock_mono_ns();
    struct event_base *base = NULL;
    struct dataplane *dp = NULL;
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
    limits.pace_held = opt.pace_held;
    signal(SIGPIPE, SIG_IGN);
    int fds = raise_fd_limit();

    dp = dataplane_new(opt.workers, &limits);
    base = event_base_new();
    if (!dp || !base) {
        fprintf(stderr, "holdfast: out of memory starting up\n");
        return 1;
    }
    struct admin *admin = admin_start(base, &opt.admin, dp, err, sizeof(err));
    if (!admin) {
        fprintf(stderr, "holdfast: --admin-listen %s\n", err);
        return EXIT_USAGE;
    }
    struct standalone *sa = NULL;
    struct controller *ctl = NULL;
    if (cfg) {
        sa = standalone_start(base, dp, cfg, err, sizeof(err));
        if (!sa) {
            fprintf(stderr, "holdfast: %s: %s\n", opt.config_file, err);
            return EXIT_USAGE;
        }
        admin_add_metrics(admin, standalone_metrics, sa);
    } else {
        ctl = controller_start(base, dp, &opt.k8s, err, sizeof(err));
        if (!ctl) {
            fprintf(stderr, "holdfast: %s\n", err);
            return EXIT_USAGE;
        }
        admin_add_metrics(admin, controller_metrics, ctl);
        admin_set_ready_check(admin, controller_ready, ctl);
        admin_set_health_check(admin, controller_health, ctl);
    }
    if (dataplane_start(dp, err, sizeof(err)) < 0) {
        fprintf(stderr, "holdfast: %s\n", err);
        return 1;
    }
    struct lifecycle *life =
        lifecycle_new(base, dp, ctl, opt.shutdown_delay_s, opt.drain_timeout_s);
    if (!life) {
        fprintf(stderr, "holdfast: out of memory starting up\n");
        return 1;
    }
    log_info("holdfast starting",
             "version=%s mode=%s config=%s workers=%d admin=%s "
             "open_files_limit=%d",
             HOLDFAST_VERSION, cfg ? "standalone" : "kubernetes", opt.config_file, opt.workers,
             opt.admin.text, fds);
    lifecycle_log_ready(life, started_ns);

    event_base_dispatch(base);

    dataplane_stop(dp);
    lifecycle_free(life);
    standalone_free(sa);
    controller_free(ctl);
    admin_free(admin);
    dataplane_free(dp);
    event_base_free(base);
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
