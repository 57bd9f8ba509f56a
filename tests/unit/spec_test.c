/* spec: an ElastiService spec read into struct es_spec: the fields, the defaults, each refusal
 * and what a refused spec keeps (the controller indexes it by Service and target). */
#include <criterion/criterion.h>
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
