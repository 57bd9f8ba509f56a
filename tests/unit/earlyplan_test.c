/* earlyplan: a pod read for early readiness (its probes as holdfast sends them, the fallbacks to
 * the kubelet), which check is due when (startupProbe first, initialDelaySeconds from the
 * container's start, successThreshold), the probe URLs and the gRPC health messages. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "controller/earlyplan.h"

#define T0_MS ((int64_t)1700000000000) /* 2023-11-14T22:13:20Z */

static cJSON *pod_with(const char *containers, const char *statuses, const char *extra_spec)
{
    char buf[8192];
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"w-1\"},\"spec\":{%s\"containers\":%s},"
             "\"status\":{\"podIP\":\"10.0.0.7\",\"conditions\":[{\"type\":\"Ready\","
             "\"status\":\"False\"}],\"containerStatuses\":%s}}",
             extra_spec, containers, statuses);
    cJSON *o = cJSON_Parse(buf);
    cr_assert_not_null(o, "test pod parses: %s", buf);
    return o;
}

#define RUNNING(name)                                                                              \
    "{\"name\":\"" name "\",\"started\":false,\"restartCount\":0,\"state\":{\"running\":"          \
    "{\"startedAt\":\"2023-11-14T22:13:20Z\"}}}"

static void parse(struct early_plan *plan, const char *containers, const char *statuses,
                  const char *extra_spec)
{
    cJSON *pod = pod_with(containers, statuses, extra_spec);
    memset(plan, 0, sizeof(*plan));
    early_plan_parse(pod, plan);
    cJSON_Delete(pod);
}

Test(earlyplan, reads_an_http_probe_as_the_kubelet_sends_it)
{
    struct early_plan p;
    parse(&p,
          "[{\"name\":\"app\",\"ports\":[{\"name\":\"http\",\"containerPort\":8080},"
          "{\"name\":\"admin\",\"containerPort\":9901}],"
          "\"readinessProbe\":{\"httpGet\":{\"path\":\"healthz\",\"port\":\"admin\","
          "\"scheme\":\"HTTPS\",\"httpHeaders\":[{\"name\":\"X-Probe\",\"value\":\"yes\"}]},"
          "\"timeoutSeconds\":2,\"initialDelaySeconds\":3,\"successThreshold\":2,"
          "\"periodSeconds\":10}}]",
          "[" RUNNING("app") "]", "");
    cr_assert_eq(p.fallback, EARLY_PROBE, "probed: %s", p.why);
    cr_expect_str_eq(p.ip, "10.0.0.7");
    cr_expect(p.running);
    cr_expect_not(p.kubelet_ready);
    cr_expect_not(p.deleting);
    cr_assert_eq(p.n_containers, 1);
    const struct early_check *c = &p.containers[0].ready;
    cr_expect_eq(c->kind, EARLY_CHECK_HTTP);
    cr_expect_eq(c->port, 9901, "the port named admin");
    cr_expect(c->https);
    cr_expect_str_eq(c->path, "/healthz", "a path without its leading slash gets one");
    cr_assert_eq(c->n_headers, 1);
    cr_expect_str_eq(c->headers[0], "X-Probe: yes");
    cr_expect_eq(c->timeout_ms, 2000);
    cr_expect_eq(c->initial_delay_ms, 3000);
    cr_expect_eq(c->success_threshold, 2);
    cr_expect_eq(p.containers[0].started_ms, T0_MS);
    cr_expect_eq(p.containers[0].startup.kind, EARLY_CHECK_NONE);
    /* the Service's targetPort: a number, a container port's name, or the Service port */
    cr_expect_eq(early_plan_port(&p, 8081, NULL, 80), 8081);
    cr_expect_eq(early_plan_port(&p, 0, "http", 80), 8080);
    cr_expect_eq(early_plan_port(&p, 0, NULL, 80), 80);
    cr_expect_eq(early_plan_port(&p, 0, "nope", 80), 0);
    char url[256];
    cr_assert_eq(early_url(c, p.ip, url, sizeof(url)), 0);
    cr_expect_str_eq(url, "https://10.0.0.7:9901/healthz");
    early_plan_clear(&p);
}

Test(earlyplan, reads_tcp_and_grpc_probes_and_formats_their_urls)
{
    struct early_plan p;
    parse(&p,
          "[{\"name\":\"a\",\"readinessProbe\":{\"tcpSocket\":{\"port\":7000}}},"
          "{\"name\":\"b\",\"readinessProbe\":{\"grpc\":{\"port\":9090,\"service\":\"s\"}}}]",
          "[" RUNNING("a") "," RUNNING("b") "]", "");
    cr_assert_eq(p.fallback, EARLY_PROBE, "probed: %s", p.why);
    cr_expect_eq(p.containers[0].ready.kind, EARLY_CHECK_TCP);
    cr_expect_eq(p.containers[0].ready.port, 7000);
    cr_expect_eq(p.containers[1].ready.kind, EARLY_CHECK_GRPC);
    cr_expect_str_eq(p.containers[1].ready.grpc_service, "s");
    char url[256];
    cr_assert_eq(early_url(&p.containers[1].ready, "fd00::7", url, sizeof(url)), 0);
    cr_expect_str_eq(url, "http://[fd00::7]:9090/grpc.health.v1.Health/Check");
    cr_expect_eq(early_url(&p.containers[1].ready, "fd00::7", url, 10), -1, "does not fit");
    early_plan_clear(&p);
}

/* Each case: the containers, and the fallback with a word its reason must hold. */
Test(earlyplan, falls_back_to_the_kubelet_when_it_cannot_probe_as_it_would)
{
    static const struct {
        const char *containers, *extra;
        enum early_fallback want;
        const char *why;
    } cases[] = {
        {"[{\"name\":\"a\",\"readinessProbe\":{\"exec\":{\"command\":[\"true\"]}}}]", "",
         EARLY_FALLBACK_EXEC, "readinessProbe.exec"},
        {"[{\"name\":\"a\"}]", "", EARLY_FALLBACK_NONE, "no container has a readinessProbe"},
        {"[{\"name\":\"a\",\"readinessProbe\":{\"tcpSocket\":{\"port\":80}}}]",
         "\"readinessGates\":[{\"conditionType\":\"x\"}],", EARLY_FALLBACK_GATES, "readinessGates"},
        {"[{\"name\":\"a\",\"readinessProbe\":{\"httpGet\":{\"port\":\"admin\"}}}]", "",
         EARLY_FALLBACK_BAD, "container a: readinessProbe.httpGet.port \"admin\""},
        {"[{\"name\":\"a\",\"readinessProbe\":{\"httpGet\":{\"port\":80,\"httpHeaders\":"
         "[{\"name\":\"X\",\"value\":\"a\\r\\nB: c\"}]}}}]",
         "", EARLY_FALLBACK_BAD, "httpHeaders[0]"},
        {"[{\"name\":\"a\",\"readinessProbe\":{\"httpGet\":{\"port\":80,\"scheme\":\"FTP\"}}}]", "",
         EARLY_FALLBACK_BAD, "scheme"},
        {"[{\"name\":\"a\",\"readinessProbe\":{\"tcpSocket\":{\"port\":80,\"host\":\"db\"}}}]", "",
         EARLY_FALLBACK_BAD, "tcpSocket.host"},
        {"[{\"name\":\"a\",\"readinessProbe\":{\"grpc\":{\"port\":\"g\"}}}]", "",
         EARLY_FALLBACK_BAD, "grpc.port"},
        {"[{\"name\":\"a\",\"readinessProbe\":{\"periodSeconds\":1}}]", "", EARLY_FALLBACK_BAD,
         "no httpGet"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct early_plan p;
        parse(&p, cases[i].containers, "[" RUNNING("a") "]", cases[i].extra);
        cr_expect_eq(p.fallback, cases[i].want, "case %zu: fallback %d, want %d (%s)", i,
                     p.fallback, cases[i].want, p.why);
        cr_expect(strstr(p.why, cases[i].why) != NULL, "case %zu: \"%s\" names \"%s\"", i, p.why,
                  cases[i].why);
        early_plan_clear(&p);
    }
    cr_expect_str_eq(early_fallback_label(EARLY_FALLBACK_EXEC), "exec");
    cr_expect_str_eq(early_fallback_label(EARLY_FALLBACK_GATES), "readiness_gates");
    cr_expect_str_eq(early_fallback_label(EARLY_FALLBACK_DISABLED), "disabled");
}

Test(earlyplan, a_pod_not_running_deleting_or_ready_says_so)
{
    struct early_plan p;
    cJSON *pod = cJSON_Parse(
        "{\"metadata\":{\"name\":\"w\",\"deletionTimestamp\":\"2023-11-14T22:13:20Z\"},"
        "\"spec\":{\"containers\":[{\"name\":\"a\",\"readinessProbe\":{\"tcpSocket\":"
        "{\"port\":80}}}]},\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}],"
        "\"containerStatuses\":[{\"name\":\"a\",\"state\":{\"waiting\":{}}}]}}");
    memset(&p, 0, sizeof(p));
    early_plan_parse(pod, &p);
    cJSON_Delete(pod);
    cr_expect(p.deleting);
    cr_expect(p.kubelet_ready);
    cr_expect_not(p.running);
    cr_expect_str_eq(p.ip, "");
    struct early_progress prog[1] = {{.seen_ms = -1}};
    struct early_due due;
    cr_expect_not(early_next(&p, prog, T0_MS, &due));
    cr_expect_eq(due.container, -1, "nothing to run in a container that does not run");
    early_plan_clear(&p);
}

Test(earlyplan, initial_delay_counts_from_the_start_never_before_the_kubelets)
{
    struct early_plan p;
    parse(&p,
          "[{\"name\":\"a\",\"readinessProbe\":{\"tcpSocket\":{\"port\":80},"
          "\"initialDelaySeconds\":5}}]",
          "[" RUNNING("a") "]", "");
    struct early_progress prog[1] = {{.seen_ms = -1}};
    struct early_due due;
    /* first seen 0.3 s after startedAt (cut to seconds): the start is taken as the first sight,
     * not startedAt, which may be up to 1 s before the real start */
    cr_expect_not(early_next(&p, prog, T0_MS + 300, &due));
    cr_assert_eq(due.container, 0);
    cr_expect_not(due.startup);
    cr_expect_eq(due.at_ms, T0_MS + 300 + 5000);
    /* seen only 10 s later (a watch that began late): startedAt + 1 s is the start */
    struct early_progress late[1] = {{.seen_ms = -1}};
    early_next(&p, late, T0_MS + 10000, &due);
    cr_expect_eq(due.at_ms, T0_MS + 1000 + 5000);
    early_plan_clear(&p);
}

Test(earlyplan, a_startup_probe_passes_before_the_readiness_probe_runs)
{
    struct early_plan p;
    parse(&p,
          "[{\"name\":\"a\",\"startupProbe\":{\"httpGet\":{\"path\":\"/started\",\"port\":80}},"
          "\"readinessProbe\":{\"httpGet\":{\"path\":\"/ready\",\"port\":80},"
          "\"successThreshold\":2}}]",
          "[" RUNNING("a") "]", "");
    struct early_progress prog[1] = {{.seen_ms = -1}};
    struct early_due due;
    cr_expect_not(early_next(&p, prog, T0_MS, &due));
    cr_assert(due.startup, "the startupProbe first");
    cr_expect_str_eq(due.check->path, "/started");
    cr_expect_not(early_result(due.check, &prog[0], true, false), "a failure passes nothing");
    cr_expect(early_result(due.check, &prog[0], true, true), "one pass is enough for startup");
    cr_expect_not(early_next(&p, prog, T0_MS + 50, &due));
    cr_assert_not(due.startup);
    cr_expect_str_eq(due.check->path, "/ready");
    /* successThreshold 2: two passes in a row; a failure between starts over */
    cr_expect_not(early_result(due.check, &prog[0], false, true));
    cr_expect_not(early_result(due.check, &prog[0], false, false));
    cr_expect_not(early_result(due.check, &prog[0], false, true));
    cr_expect(early_result(due.check, &prog[0], false, true));
    cr_expect(early_next(&p, prog, T0_MS + 200, &due), "every container passed");
    early_plan_clear(&p);
}

Test(earlyplan, an_exec_startup_probe_waits_for_the_kubelets_started)
{
    struct early_plan p;
    parse(&p,
          "[{\"name\":\"a\",\"startupProbe\":{\"exec\":{\"command\":[\"x\"]}},"
          "\"readinessProbe\":{\"tcpSocket\":{\"port\":80}}},"
          "{\"name\":\"side\"}]",
          "[" RUNNING("a") "," RUNNING("side") "]", "");
    cr_assert_eq(p.fallback, EARLY_PROBE, "an exec startupProbe is the kubelet's: %s", p.why);
    struct early_progress prog[2] = {{.seen_ms = -1}, {.seen_ms = -1}};
    struct early_due due;
    cr_expect_not(early_next(&p, prog, T0_MS, &due));
    cr_expect_eq(due.container, -1, "nothing runs before the kubelet says started");
    cr_expect(prog[1].passed, "a running container without a readinessProbe passes");
    p.containers[0].started = true; /* the pod's next update */
    cr_expect_not(early_next(&p, prog, T0_MS + 50, &due));
    cr_expect_eq(due.container, 0);
    cr_expect_eq(due.check->kind, EARLY_CHECK_TCP);
    early_plan_clear(&p);
}

Test(earlyplan, grpc_health_messages)
{
    unsigned char buf[64];
    size_t n = early_grpc_request(NULL, buf, sizeof(buf));
    cr_assert_eq(n, 5, "an empty HealthCheckRequest, framed");
    cr_expect_eq(memcmp(buf, "\0\0\0\0\0", 5), 0);
    n = early_grpc_request("svc", buf, sizeof(buf));
    cr_assert_eq(n, 10);
    cr_expect_eq(memcmp(buf, "\0\0\0\0\5\x0a\3svc", 10), 0);
    cr_expect_eq(early_grpc_request("svc", buf, 9), 0, "does not fit");
    static const unsigned char serving[] = {0, 0, 0, 0, 2, 0x08, 1};
    static const unsigned char not_serving[] = {0, 0, 0, 0, 2, 0x08, 2};
    static const unsigned char empty[] = {0, 0, 0, 0, 0}; /* status UNKNOWN (0) */
    static const unsigned char cut[] = {0, 0, 0, 0, 9, 0x08, 1};
    static const unsigned char other_field_first[] = {0, 0, 0, 0, 5, 0x12, 1, 'x', 0x08, 1};
    cr_expect(early_grpc_serving(serving, sizeof(serving)));
    cr_expect_not(early_grpc_serving(not_serving, sizeof(not_serving)));
    cr_expect_not(early_grpc_serving(empty, sizeof(empty)));
    cr_expect_not(early_grpc_serving(cut, sizeof(cut)));
    cr_expect(early_grpc_serving(other_field_first, sizeof(other_field_first)));
}
