/* prom: trigger metadata as KubeElasti reads it, the queries sent, and how answers are judged. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "controller/prom.h"

static int parse(const char *json, struct prom_trigger *t, char *err, size_t errlen,
                 const char *def_server, const char *def_auth)
{
    cJSON *j = cJSON_Parse(json);
    cr_assert_not_null(j, "test JSON: %s", json);
    int rc = prom_trigger_parse(j, "spec.triggers[0]", def_server, def_auth, t, err, errlen);
    cJSON_Delete(j);
    return rc;
}

Test(prom, parses_kubeelasti_metadata)
{
    struct prom_trigger t;
    char err[256];
    cr_assert_eq(
        parse("{\"type\":\"prometheus\",\"metadata\":{\"query\":\"sum(rate(x[1m])) or "
              "vector(0)\",\"serverAddress\":\"http://prom:9090/\",\"threshold\":\"0.5\"}}",
              &t, err, sizeof(err), NULL, NULL),
        0, "%s", err);
    cr_assert_str_eq(t.server_address, "http://prom:9090", "trailing slash dropped");
    cr_assert_str_eq(t.query, "sum(rate(x[1m])) or vector(0)");
    cr_assert_float_eq(t.threshold, 0.5, 1e-12);
    cr_assert_str_eq(t.uptime_filter, "container=\"prometheus\"");
    cr_assert_null(t.headers[0]);
    prom_trigger_clear(&t);
}

Test(prom, defaults_server_and_authorization)
{
    struct prom_trigger t;
    char err[256];
    cr_assert_eq(parse("{\"type\":\"prometheus\",\"metadata\":{\"query\":\"up\",\"threshold\":1,"
                       "\"uptimeFilter\":\"job=\\\"prom\\\"\"}}",
                       &t, err, sizeof(err), "http://default:9090", "Bearer abc"),
                 0, "%s", err);
    cr_assert_str_eq(t.server_address, "http://default:9090");
    cr_assert_float_eq(t.threshold, 1.0, 1e-12, "a numeric threshold is accepted too");
    cr_assert_str_eq(t.uptime_filter, "job=\"prom\"");
    cr_assert_str_eq(t.headers[0], "Authorization: Bearer abc");
    cr_assert_null(t.headers[1]);
    prom_trigger_clear(&t);
}

Test(prom, trigger_headers_win_over_the_default_authorization)
{
    struct prom_trigger t;
    char err[256];
    cr_assert_eq(
        parse("{\"type\":\"prometheus\",\"metadata\":{\"query\":\"up\",\"threshold\":\"0\","
              "\"serverAddress\":\"https://p\",\"headers\":{\"authorization\":\"Basic x\","
              "\"X-Scope-OrgID\":\"team\"}}}",
              &t, err, sizeof(err), NULL, "Bearer default"),
        0, "%s", err);
    cr_assert_str_eq(t.headers[0], "authorization: Basic x");
    cr_assert_str_eq(t.headers[1], "X-Scope-OrgID: team");
    cr_assert_null(t.headers[2]);
    prom_trigger_clear(&t);
}

Test(prom, rejects_bad_metadata_naming_the_field)
{
    struct prom_trigger t;
    char err[256];
    cr_assert_eq(parse("{\"type\":\"prometheus\",\"metadata\":{\"query\":\"up\","
                       "\"serverAddress\":\"http://p\",\"threshold\":\"abc\"}}",
                       &t, err, sizeof(err), NULL, NULL),
                 -1);
    cr_assert_str_eq(err, "spec.triggers[0].metadata.threshold: \"abc\" is not a number");
    cr_assert_eq(parse("{\"type\":\"prometheus\",\"metadata\":{\"threshold\":\"1\","
                       "\"serverAddress\":\"http://p\"}}",
                       &t, err, sizeof(err), NULL, NULL),
                 -1);
    cr_assert_not_null(strstr(err, "spec.triggers[0].metadata.query"), "%s", err);
    cr_assert_eq(
        parse("{\"type\":\"prometheus\",\"metadata\":{\"query\":\"up\",\"threshold\":\"1\"}}", &t,
              err, sizeof(err), NULL, NULL),
        -1);
    cr_assert_not_null(strstr(err, "metadata.serverAddress: required"), "%s", err);
    cr_assert_eq(parse("{\"type\":\"cpu\",\"metadata\":{}}", &t, err, sizeof(err), NULL, NULL), -1);
    cr_assert_not_null(strstr(err, "spec.triggers[0].type"), "%s", err);
    cr_assert_eq(
        parse("{\"type\":\"prometheus\",\"metadata\":{\"query\":\"up\",\"threshold\":\"1\","
              "\"serverAddress\":\"http://p\",\"headers\":{\"X\":\"a\\r\\nB: c\"}}}",
              &t, err, sizeof(err), NULL, NULL),
        -1, "header injection refused");
}

Test(prom, uptime_query_is_kubeelastis)
{
    char *q = prom_uptime_query(NULL, 900);
    cr_assert_str_eq(q, "min_over_time((max(up{container=\"prometheus\"}) or vector(0))[900s:])");
    free(q);
    q = prom_uptime_query("job=\"x\"", 0);
    cr_assert_str_eq(q, "min_over_time((max(up{job=\"x\"}) or vector(0))[1s:])");
    free(q);
}

Test(prom, query_url_escapes_and_pins_the_time)
{
    char *url = prom_query_url("http://p:9090", "sum(rate(x{a=\"b c\"}[1m]))", 0);
    cr_assert_str_eq(url,
                     "http://p:9090/api/v1/query?query=sum%28rate%28x%7Ba%3D%22b%20c%22%7D%5B1m"
                     "%5D%29%29&time=1970-01-01T00:00:00Z");
    free(url);
}

static enum prom_status judge(long status, const char *body, double *v)
{
    char reason[256];
    return prom_parse_response(status, body, strlen(body), v, reason, sizeof(reason));
}

Test(prom, judges_answers_like_kubeelasti)
{
    double v = -1;
    cr_assert_eq(judge(200,
                       "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":"
                       "[{\"metric\":{},\"value\":[1700000000,\"0.25\"]}]}}",
                       &v),
                 PROM_OK);
    cr_assert_float_eq(v, 0.25, 1e-12);
    cr_assert_eq(
        judge(200, "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[]}}",
              &v),
        PROM_EMPTY);
    cr_assert_eq(judge(200,
                       "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":"
                       "[{\"metric\":{\"a\":\"1\"},\"value\":[1,\"1\"]},{\"metric\":{\"a\":\"2\"},"
                       "\"value\":[1,\"2\"]}]}}",
                       &v),
                 PROM_MULTIPLE);
    cr_assert_eq(judge(200,
                       "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":"
                       "[{\"metric\":{},\"value\":[1,\"abc\"]}]}}",
                       &v),
                 PROM_NOT_A_NUMBER);
    cr_assert_eq(judge(200,
                       "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":"
                       "[{\"metric\":{},\"value\":[1,\"+Inf\"]}]}}",
                       &v),
                 PROM_INFINITE);
    cr_assert_eq(judge(400, "{\"status\":\"error\",\"error\":\"parse error\"}", &v),
                 PROM_HTTP_STATUS);
    cr_assert_eq(judge(200, "<html>", &v), PROM_BAD_RESPONSE);
    cr_assert_eq(judge(0, "", &v), PROM_UNREACHABLE);
    cr_assert_eq(judge(200,
                       "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":"
                       "[1,\"3\"]}}",
                       &v),
                 PROM_OK, "a scalar result is a value too");
    cr_assert_float_eq(v, 3.0, 1e-12);
    cr_assert_eq(judge(200,
                       "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":"
                       "[{\"metric\":{},\"value\":[1,\"NaN\"]}]}}",
                       &v),
                 PROM_OK);
    cr_assert(isnan(v), "NaN is a value below no threshold");
}

Test(prom, error_reasons_carry_prometheus_message)
{
    double v;
    char reason[256];
    const char *body =
        "{\"status\":\"error\",\"errorType\":\"bad_data\",\"error\":\"1:5: parse error\"}";
    cr_assert_eq(prom_parse_response(400, body, strlen(body), &v, reason, sizeof(reason)),
                 PROM_HTTP_STATUS);
    cr_assert_str_eq(reason, "Prometheus answered HTTP 400: 1:5: parse error");
    cr_assert_str_eq(prom_status_reason(PROM_HTTP_STATUS), "PrometheusError");
}
