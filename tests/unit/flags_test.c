/*
 * flags: the command line of holdfast run and restore (process/flags.c). Each default is the
 * one controller/defaults.h defines; a flag wins over its environment variable, which wins over
 * the default; a bad value exits 2 naming the flag (or, for some, the variable); the usage names
 * every flag of every mode.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdlib.h>
#include <string.h>

#include "controller/defaults.h"
#include "process/flags.h"

static const char *const variables[] = {
    "KUBECONFIG",
    "HOLDFAST_NAMESPACE",
    "HOLDFAST_BIND_ADDRESS",
    "HOLDFAST_KUBE_API_QPS",
    "HOLDFAST_POLLING_INTERVAL",
    "HOLDFAST_PROXY_PORT_RANGE",
    "POD_NAMESPACE",
    "HOLDFAST_PACE_HELD",
};

static void clean_environment(void)
{
    for (size_t i = 0; i < sizeof(variables) / sizeof(variables[0]); i++)
        unsetenv(variables[i]);
}

static int run(struct options *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    return flags_parse_run(argc, argv, o);
}

TestSuite(flags, .init = clean_environment);

Test(flags, kubernetes_mode_defaults_are_the_controllers)
{
    struct options o;
    char *argv[] = {"run", NULL};
    cr_assert_eq(run(&o, 1, argv), 0);
    cr_assert_null(o.config_file);
    cr_assert_eq(o.k8s.port_min, CONTROLLER_DEFAULT_PORT_MIN);
    cr_assert_eq(o.k8s.port_max, CONTROLLER_DEFAULT_PORT_MAX);
    cr_assert_eq(o.k8s.polling_interval_ms, CONTROLLER_DEFAULT_POLLING_INTERVAL_MS);
    cr_assert_eq(o.k8s.shared_port, CONTROLLER_DEFAULT_SHARED_PORT);
    cr_assert_eq(o.k8s.api_qps, CONTROLLER_DEFAULT_API_QPS);
    cr_assert_eq(o.k8s.api_burst, CONTROLLER_DEFAULT_API_BURST);
    cr_assert_eq(o.k8s.api_timeout_ms, CONTROLLER_DEFAULT_API_TIMEOUT_MS);
    cr_assert_eq(o.k8s.prometheus_max_inflight, CONTROLLER_DEFAULT_PROMETHEUS_MAX_INFLIGHT);
    cr_assert_eq(o.k8s.scale_down_probe_timeout_ms, CONTROLLER_DEFAULT_SCALE_DOWN_PROBE_TIMEOUT_MS);
    cr_assert_eq(o.k8s.scale_down_grace_ms, CONTROLLER_DEFAULT_SCALE_DOWN_GRACE_MS);
    cr_assert_eq(o.k8s.status_heartbeat_s, 0, "derived by the controller");
    cr_assert_eq(o.k8s.liveness_bound_ms, 0, "derived by the controller");
    cr_assert(o.k8s.leader_elect);
    cr_assert_not(o.k8s.no_target_watch);
    cr_assert_str_eq(o.k8s.bind_address, CONTROLLER_DEFAULT_BIND_ADDRESS);
    cr_assert_str_eq(o.admin.text, "0.0.0.0:8013");
    cr_assert_eq(o.drain_timeout_s, 30);
    cr_assert_eq(o.log_level, LOG_INFO);
    cr_assert_gt(o.workers, 0);
}

Test(flags, a_flag_wins_over_its_variable_which_wins_over_the_default)
{
    struct options o;
    setenv("HOLDFAST_POLLING_INTERVAL", "2s", 1);
    setenv("HOLDFAST_KUBE_API_QPS", "7", 1);
    setenv("HOLDFAST_BIND_ADDRESS", "::1", 1);
    char *argv[] = {"run", "--kube-api-qps", "3", "--admin-port", "9000", NULL};
    cr_assert_eq(run(&o, 5, argv), 0);
    cr_assert_eq(o.k8s.polling_interval_ms, 2000);
    cr_assert_eq(o.k8s.api_qps, 3);
    cr_assert_str_eq(o.admin.text, "[::1]:9000");
}

Test(flags, standalone_mode_reads_no_kubernetes_variable)
{
    struct options o;
    setenv("HOLDFAST_KUBE_API_QPS", "not a number", 1);
    char *argv[] = {"run", "--config", "x.json", "--workers", "3", NULL};
    cr_assert_eq(run(&o, 5, argv), 0);
    cr_assert_str_eq(o.config_file, "x.json");
    cr_assert_eq(o.workers, 3);
    cr_assert_str_eq(o.admin.text, "0.0.0.0:8013");
}

Test(flags, pacing_of_held_connections_is_on_unless_switched_off_in_either_mode)
{
    struct options o;
    char *standalone[] = {"run", "--config", "x.json", NULL};
    cr_assert_eq(run(&o, 3, standalone), 0);
    cr_assert(o.pace_held);
    char *off[] = {"run", "--config", "x.json", "--pace-held=false", NULL};
    cr_assert_eq(run(&o, 4, off), 0);
    cr_assert_not(o.pace_held);
    setenv("HOLDFAST_PACE_HELD", "false", 1);
    char *kube[] = {"run", NULL};
    cr_assert_eq(run(&o, 1, kube), 0);
    cr_assert_not(o.pace_held, "from the environment, Kubernetes mode too");
    char *on[] = {"run", "--pace-held", "true", NULL};
    cr_assert_eq(run(&o, 3, on), 0);
    cr_assert(o.pace_held, "the flag wins over the variable");
}

/* What the parser wrote to stderr so far (redirected by Criterion). */
static char *stderr_text(void)
{
    static char buf[65536];
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = 0;
    return buf;
}

Test(flags, bad_values_exit_2_naming_the_flag_or_the_variable, .init = cr_redirect_stderr)
{
    clean_environment();
    struct options o;
    char *bad_flag[] = {"run", "--polling-interval", "10ms", NULL};
    cr_assert_eq(run(&o, 3, bad_flag), EXIT_USAGE);
    setenv("HOLDFAST_KUBE_API_QPS", "0", 1);
    char *argv[] = {"run", NULL};
    cr_assert_eq(run(&o, 1, argv), EXIT_USAGE);
    char *pace[] = {"run", "--pace-held", "sometimes", NULL};
    cr_assert_eq(run(&o, 3, pace), EXIT_USAGE);
    char *mixed[] = {"run", "--config", "x.json", "--namespace", "a", NULL};
    cr_assert_eq(run(&o, 5, mixed), EXIT_USAGE);
    const char *text = stderr_text();
    cr_assert(strstr(text, "holdfast: --polling-interval: must be at least 100ms\n"), "%s", text);
    cr_assert(strstr(text, "holdfast: HOLDFAST_KUBE_API_QPS: \"0\" is not a number from 0.1 to "
                           "10000\n"),
              "%s", text);
    cr_assert(strstr(text, "holdfast: --config (standalone mode) does not take Kubernetes flags"),
              "%s", text);
    cr_assert(strstr(text, "holdfast: --pace-held: \"sometimes\" is not true or false\n"), "%s",
              text);
}

Test(flags, restore_needs_a_selection_and_lease_flags_need_uninstall, .init = cr_redirect_stderr)
{
    clean_environment();
    struct options o = {0};
    char *none[] = {"restore", NULL};
    cr_assert_eq(flags_parse_restore(1, none, &o), EXIT_USAGE);
    memset(&o, 0, sizeof(o));
    char *lease[] = {"restore", "--all", "--lease-name", "l", NULL};
    cr_assert_eq(flags_parse_restore(4, lease, &o), EXIT_USAGE);
    memset(&o, 0, sizeof(o));
    setenv("POD_NAMESPACE", "hf", 1);
    char *one[] = {"restore", "--namespace", "ns", "web", "--uninstall", NULL};
    cr_assert_eq(flags_parse_restore(5, one, &o), 0);
    cr_assert_str_eq(o.restore.namespace_, "ns");
    cr_assert_str_eq(o.restore.name, "web");
    cr_assert_str_eq(o.restore.lease_namespace, "hf");
    cr_assert_eq(o.restore.timeout_s, 120);
    cr_assert(o.restore.uninstall);
}

Test(flags, the_usage_names_every_mode_and_variable, .init = cr_redirect_stdout)
{
    flags_usage(stdout);
    fflush(stdout);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stdout());
    buf[n] = 0;
    const char *want[] = {"--config FILE",
                          "--kubeconfig FILE [KUBECONFIG; default in-cluster]",
                          "--polling-interval DURATION [HOLDFAST_POLLING_INTERVAL; default 30s]",
                          "--proxy-port-range A-B [HOLDFAST_PROXY_PORT_RANGE; default 20000-29999]",
                          "PROMETHEUS_TRIGGER_AUTHORIZATION_HEADER",
                          "restore flags:",
                          "--uninstall"};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        cr_assert(strstr(buf, want[i]), "usage lacks %s", want[i]);
}
