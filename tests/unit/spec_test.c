/* spec: an ElastiService spec read into struct es_spec: the fields, the defaults, each refusal
 * and what a refused spec keeps (the controller indexes it by Service and target). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "controller/spec.h"

#define TARGET                                                                                     \
    "\"scaleTargetRef\":{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"name\":\"web\"}"
#define TRIGGER                                                                                    \
    "{\"type\":\"prometheus\",\"metadata\":{\"query\":\"sum(x)\",\"serverAddress\":"               \
    "\"http://prom:9090\",\"threshold\":\"0.5\"}}"

static int parse(const char *spec_json, struct es_spec *s, char *err, size_t errlen)
{
    cJSON *j = json_parse(spec_json, strlen(spec_json) + 1, NULL, true);
    cr_assert_not_null(j, "%s", spec_json);
    int rc = spec_parse(j, "http://default:9090", NULL, s, err, errlen);
    cJSON_Delete(j);
    return rc;
}

Test(spec, reads_every_field)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET ",\"minTargetReplicas\":3,"
                       "\"cooldownPeriod\":60,\"holdTimeoutSeconds\":30,\"maxHeldConnections\":7,"
                       "\"triggers\":[" TRIGGER "," TRIGGER "],"
                       "\"enabledPeriod\":{\"schedule\":\"0 9 * * 1-5\",\"duration\":\"8h\"},"
                       "\"autoscaler\":{\"type\":\"keda\",\"name\":\"web-so\"},"
                       "\"probeResponse\":[{\"path\":{\"type\":\"Exact\",\"value\":\"/healthz\"},"
                       "\"response\":{\"status\":200}}]}",
                       &s, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_str_eq(s.service, "web");
    cr_assert(s.target_ok);
    cr_assert_eq(s.target.kind, TARGET_DEPLOYMENT);
    cr_assert_str_eq(s.target.name, "web");
    cr_assert_eq(s.min_replicas, 3);
    cr_assert_eq(s.cooldown_s, 60);
    cr_assert_eq(s.hold_timeout_s, 30);
    cr_assert_eq(s.max_held, 7);
    cr_assert_eq(s.n_triggers, 2);
    cr_assert_str_eq(s.triggers[1].query, "sum(x)");
    cr_assert(s.has_period);
    cr_assert_str_eq(s.schedule, "0 9 * * 1-5");
    cr_assert_str_eq(s.duration, "8h");
    cr_assert_str_eq(s.keda, "web-so");
    cr_assert_not_null(s.probes);
    spec_clear(&s);
    cr_assert_null(s.service);
    cr_assert_eq(s.n_triggers, 0);
}

Test(spec, takes_the_defaults)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(
        parse("{\"service\":\"web\"," TARGET ",\"minTargetReplicas\":0,"
              "\"cooldownPeriod\":-1,\"holdTimeoutSeconds\":0,"
              "\"maxHeldConnections\":-5,\"autoscaler\":{\"type\":\"hpa\",\"name\":\"x\"}}",
              &s, err, sizeof(err)),
        0, "%s", err);
    cr_assert_eq(s.min_replicas, 1);
    cr_assert_eq(s.cooldown_s, SPEC_DEFAULT_COOLDOWN_S);
    cr_assert_eq(s.hold_timeout_s, SPEC_DEFAULT_HOLD_TIMEOUT_S);
    cr_assert_eq(s.max_held, SPEC_DEFAULT_MAX_HELD);
    cr_assert_eq(s.n_triggers, 0);
    cr_assert_not(s.has_period);
    cr_assert_null(s.keda, "only a keda autoscaler is paused");
    cr_assert_not_null(s.probes, "no probeResponse: an empty rule set");
    spec_clear(&s);

    /* a cooldown of 0 is kept: scale down as soon as the triggers say so */
    cr_assert_eq(
        parse("{\"service\":\"web\"," TARGET ",\"cooldownPeriod\":0}", &s, err, sizeof(err)), 0,
        "%s", err);
    cr_assert_eq(s.cooldown_s, 0);
    spec_clear(&s);
}

Test(spec, refuses_a_missing_service)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{" TARGET ",\"cooldownPeriod\":5}", &s, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "spec.service: required");
    cr_assert_eq(s.cooldown_s, 5, "the numbers are read first");
    cr_assert_not(s.target_ok);
    spec_clear(&s);
}

Test(spec, refuses_a_bad_target_and_keeps_the_service)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{\"service\":\"web\"}", &s, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "spec.scaleTargetRef: required, an object");
    cr_assert_str_eq(s.service, "web", "indexed by its Service all the same");
    cr_assert_not(s.target_ok);
    spec_clear(&s);
}

Test(spec, refuses_a_bad_trigger_and_keeps_the_ones_before)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET ",\"triggers\":[" TRIGGER
                       ",{\"type\":\"prometheus\",\"metadata\":{\"query\":\"q\","
                       "\"threshold\":\"abc\"}}]}",
                       &s, err, sizeof(err)),
                 -1);
    cr_assert(strncmp(err, "spec.triggers[1]", 16) == 0, "%s", err);
    cr_assert(s.target_ok, "indexed by its target all the same");
    cr_assert_eq(s.n_triggers, 1);
    cr_assert_null(s.probes);
    spec_clear(&s);
}

Test(spec, takes_the_default_prometheus_address)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET ",\"triggers\":[{\"type\":\"prometheus\","
                       "\"metadata\":{\"query\":\"q\",\"threshold\":\"1\"}}]}",
                       &s, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_str_eq(s.triggers[0].server_address, "http://default:9090");
    spec_clear(&s);
}

Test(spec, refuses_bad_probe_rules)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET ",\"probeResponse\":[{\"path\":"
                       "{\"type\":\"Nope\",\"value\":\"/\"}}]}",
                       &s, err, sizeof(err)),
                 -1);
    cr_assert(strncmp(err, "spec.probeResponse[0]", 21) == 0, "%s", err);
    cr_assert_null(s.probes);
    spec_clear(&s);
}

Test(spec, refuses_a_string_holding_nul_before_reading_any)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{\"service\":\"web\\u0000x\"," TARGET ",\"minTargetReplicas\":2}", &s, err,
                       sizeof(err)),
                 -1);
    cr_assert(strstr(err, "spec.service") != NULL, "%s", err);
    cr_assert_null(s.service, "\"web\" would be another Service");
    cr_assert_eq(s.min_replicas, 2);
    spec_clear(&s);
}

Test(spec, parses_again_over_a_parsed_spec)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(
        parse("{\"service\":\"a\"," TARGET ",\"triggers\":[" TRIGGER "]}", &s, err, sizeof(err)), 0,
        "%s", err);
    cr_assert_eq(parse("{\"service\":\"b\"," TARGET "}", &s, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(s.service, "b");
    cr_assert_eq(s.n_triggers, 0);
    spec_clear(&s);
}

Test(spec, reads_the_waiting_page_and_defaults_it_off)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET "}", &s, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(s.waiting_page.enabled);
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET ",\"waitingPage\":{\"enabled\":true,"
                       "\"retryAfterSeconds\":9,\"html\":\"<p>wait</p>\"}}",
                       &s, err, sizeof(err)),
                 0, "%s", err);
    cr_assert(s.waiting_page.enabled);
    cr_assert_eq(s.waiting_page.retry_after_s, 9);
    cr_assert_eq(s.waiting_page.html_len, 11);
    cr_assert_eq(memcmp(s.waiting_page.html, "<p>wait</p>", 11), 0);
    spec_clear(&s);
    cr_assert_null(s.waiting_page.html);
}

Test(spec, refuses_a_bad_waiting_page_naming_the_field)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET ",\"waitingPage\":{\"enabled\":true,"
                       "\"retryAfterSeconds\":0}}",
                       &s, err, sizeof(err)),
                 -1);
    cr_assert_str_eq(err, "spec.waitingPage.retryAfterSeconds: must be an integer from 1 to 3600");
    cr_assert_not(s.waiting_page.enabled, "a refused page is not served");
    cr_assert_str_eq(s.service, "web");
    cr_assert_not_null(s.probes, "what comes before the page is kept");
    cr_assert_eq(
        parse("{\"service\":\"web\"," TARGET ",\"waitingPage\":\"on\"}", &s, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "spec.waitingPage: must be an object, not a string");
    spec_clear(&s);
}
Test(spec, reads_early_readiness_on_by_default_and_refuses_a_bad_one)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET "}", &s, err, sizeof(err)), 0, "%s", err);
    cr_assert(s.early_readiness, "absent: on");
    cr_assert_eq(
        parse("{\"service\":\"web\"," TARGET ",\"earlyReadiness\":{}}", &s, err, sizeof(err)), 0,
        "%s", err);
    cr_assert(s.early_readiness, "enabled absent: on");
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET ",\"earlyReadiness\":{\"enabled\":false}}",
                       &s, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_not(s.early_readiness, "the opt-out");
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET ",\"earlyReadiness\":{\"enabled\":\"no\"}}",
                       &s, err, sizeof(err)),
                 -1);
    cr_assert_str_eq(err, "spec.earlyReadiness.enabled: must be true or false");
    cr_assert_eq(
        parse("{\"service\":\"web\"," TARGET ",\"earlyReadiness\":false}", &s, err, sizeof(err)),
        -1);
    cr_assert(strstr(err, "spec.earlyReadiness: must be an object") == err, "%s", err);
    spec_clear(&s);
}

Test(spec, reads_the_wake_fields)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET ",\"minTargetReplicas\":2,"
                       "\"podCapacity\":50,\"maxWakeReplicas\":8,\"wakeWith\":["
                       "{\"kind\":\"Deployment\",\"name\":\"worker\"},"
                       "{\"kind\":\"StatefulSet\",\"name\":\"web\",\"apiVersion\":\"apps/v1\"},"
                       "{\"kind\":\"rollouts\",\"name\":\"cache\"}]}",
                       &s, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(s.pod_capacity, 50);
    cr_assert_eq(s.max_wake_replicas, 8);
    cr_assert_eq(s.n_wake_with, 3);
    cr_assert_eq(s.wake_with[0].kind, TARGET_DEPLOYMENT);
    cr_assert_str_eq(s.wake_with[0].name, "worker");
    cr_assert_str_eq(s.wake_with[0].res.group, "apps");
    /* same name as the target, another kind: another workload */
    cr_assert_eq(s.wake_with[1].kind, TARGET_STATEFULSET);
    cr_assert_eq(s.wake_with[2].kind, TARGET_ROLLOUT);
    cr_assert_str_eq(s.wake_with[2].res.group, "argoproj.io");
    spec_clear(&s);
    cr_assert_null(s.wake_with);
    cr_assert_eq(s.n_wake_with, 0);

    /* all absent: a wake asks for minTargetReplicas, no bound, nobody else */
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET "}", &s, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(s.pod_capacity, 0);
    cr_assert_eq(s.max_wake_replicas, 0);
    cr_assert_eq(s.n_wake_with, 0);
    /* a max equal to min is fine */
    cr_assert_eq(parse("{\"service\":\"web\"," TARGET ",\"minTargetReplicas\":3,"
                       "\"maxWakeReplicas\":3,\"wakeWith\":[]}",
                       &s, err, sizeof(err)),
                 0, "%s", err);
    cr_assert_eq(s.max_wake_replicas, 3);
    spec_clear(&s);
}

static void refused(const char *spec_json, const char *field, const char *detail)
{
    struct es_spec s = {0};
    char err[512] = "";
    cr_assert_eq(parse(spec_json, &s, err, sizeof(err)), -1, "accepted: %s", spec_json);
    cr_assert(strncmp(err, field, strlen(field)) == 0, "%s does not start with %s", err, field);
    cr_assert(strstr(err, detail) != NULL, "%s lacks %s", err, detail);
    /* what came before is kept: the controller still indexes it */
    cr_assert_str_eq(s.service, "web");
    cr_assert(s.target_ok);
    spec_clear(&s);
}

Test(spec, refuses_bad_wake_fields_naming_the_field)
{
#define S "{\"service\":\"web\"," TARGET ","
    refused(S "\"podCapacity\":0}", "spec.podCapacity: ", "1 to 10000000");
    refused(S "\"podCapacity\":-3}", "spec.podCapacity: ", "integer");
    refused(S "\"podCapacity\":1.5}", "spec.podCapacity: ", "integer");
    refused(S "\"podCapacity\":\"2\"}", "spec.podCapacity: ", "integer");
    refused(S "\"podCapacity\":1e300}", "spec.podCapacity: ", "integer");
    refused(S "\"maxWakeReplicas\":0}", "spec.maxWakeReplicas: ", "1 to 100000");
    refused(S "\"maxWakeReplicas\":100001}", "spec.maxWakeReplicas: ", "1 to 100000");
    refused(S "\"minTargetReplicas\":3,\"maxWakeReplicas\":2}",
            "spec.maxWakeReplicas: ", "below spec.minTargetReplicas (3)");
    refused(S "\"wakeWith\":{\"kind\":\"Deployment\",\"name\":\"w\"}}", "spec.wakeWith: ", "list");
    refused(S "\"wakeWith\":[{\"kind\":\"Deployment\",\"name\":\"web\"}]}",
            "spec.wakeWith[0]: ", "scale target itself");
    refused(S "\"wakeWith\":[{\"kind\":\"Deployment\",\"name\":\"a\"},"
              "{\"kind\":\"deployments\",\"name\":\"a\",\"apiVersion\":\"apps/v1\"}]}",
            "spec.wakeWith[1]: ", "listed twice (also spec.wakeWith[0])");
    refused(S "\"wakeWith\":[{\"kind\":\"Job\",\"name\":\"a\"}]}",
            "spec.wakeWith[0].kind: ", "\"Job\"");
    refused(S "\"wakeWith\":[{\"kind\":\"Deployment\"}]}", "spec.wakeWith[0].name: ", "required");
    refused(S "\"wakeWith\":[{\"kind\":\"Rollout\",\"name\":\"a\",\"apiVersion\":\"apps/v1\"}]}",
            "spec.wakeWith[0].apiVersion: ", "does not serve kind Rollout");
    refused(S "\"wakeWith\":[\"worker\"]}", "spec.wakeWith[0]: ", "an object");
    char many[4096];
    int at = snprintf(many, sizeof(many), S "\"wakeWith\":[");
    for (int i = 0; i < SPEC_MAX_WAKE_WITH + 1; i++)
        at += snprintf(many + at, sizeof(many) - (size_t)at,
                       "%s{\"kind\":\"Deployment\",\"name\":\"w%d\"}", i ? "," : "", i);
    snprintf(many + at, sizeof(many) - (size_t)at, "]}");
    refused(many, "spec.wakeWith: ", "at most 16");
#undef S
}
