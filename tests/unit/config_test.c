/*
 * config_test: the standalone configuration file: every field and default read back, and each
 * kind of mistake reported once as "FILE: json.path: what is wrong".
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "resolver/probe.h"
#include "resolver/route.h"
#include "standalone/config.h"

static struct config *parse_ok(const char *json)
{
    struct config *cfg = NULL;
    char err[1024] = "";
    int rc = config_parse(json, "test.json", &cfg, err, sizeof(err));
    cr_assert_eq(rc, 0, "rejected: %s", err);
    cr_assert_not_null(cfg);
    return cfg;
}

/* The message for `json`, which must be rejected. */
static const char *parse_err(const char *json)
{
    static char err[1024];
    struct config *cfg = (struct config *)1;
    err[0] = '\0';
    int rc = config_parse(json, "test.json", &cfg, err, sizeof(err));
    cr_assert_eq(rc, -1, "accepted: %s", json);
    cr_assert_null(cfg);
    return err;
}

/* A config with one service whose extra members are `extra` (JSON, may be ""). */
static const char *one_service(const char *extra)
{
    static char json[4096];
    snprintf(json, sizeof(json),
             "{\"services\": [{\"name\": \"hello\", \"listen\": [\"127.0.0.1:18080\"], "
             "\"backends\": [\"127.0.0.1:19080\"]%s%s}]}",
             *extra ? ", " : "", extra);
    return json;
}

#define ONE_SERVICE_ERR(extra) parse_err(one_service(extra))

/* A valid "services" member, for tests about the other top-level members. */
#define SERVICES                                                                                   \
    "\"services\": [{\"name\": \"a\", \"listen\": [\":1\"], \"backends\": [\"127.0.0.1:2\"]}]"

/* ---- valid files ------------------------------------------------------------------------- */

Test(config, full_file_round_trip)
{
    struct config *cfg = parse_ok(
        "{\n"
        "  \"services\": [\n"
        "    {\n"
        "      \"namespace\": \"shop\", \"name\": \"hello\",\n"
        "      \"listen\": [\"127.0.0.1:18080\", \"[::1]:18080\"],\n"
        "      \"backends\": [\"127.0.0.1:19080\", \"localhost:19081\"],\n"
        "      \"protocol\": \"http\",\n"
        "      \"wake\": {\"command\": [\"/bin/sh\", \"-c\", \"exec server 19080\"]},\n"
        "      \"readiness\": {\"httpGet\": {\"path\": \"/ready\"}},\n"
        "      \"readinessPeriodMs\": 100, \"holdTimeoutSeconds\": 30,\n"
        "      \"maxHeldConnections\": 500, \"maxHeldBytes\": 1048576,\n"
        "      \"probeResponse\": [\n"
        "        {\"method\": \"GET\", \"path\": {\"type\": \"Exact\", \"value\": \"/healthz\"},\n"
        "         \"response\": {\"status\": 204, \"body\": \"{}\"}},\n"
        "        {\"response\": {\"body\": \"fallback\"}}\n"
        "      ]\n"
        "    },\n"
        "    {\n"
        "      \"name\": \"db\", \"listen\": [\":15432\"], \"backends\": [\"127.0.0.1:5432\"],\n"
        "      \"protocol\": \"tcp\", \"readiness\": {\"tcp\": {}}\n"
        "    }\n"
        "  ],\n"
        "  \"shared\": {\"listen\": [\"127.0.0.1:8012\", \"127.0.0.1:8013\"]},\n"
        "  \"limits\": {\n"
        "    \"maxHeldConnections\": 9000, \"maxHeldBytes\": 134217728,\n"
        "    \"holdBufferBytes\": 16384, \"maxHeadBytes\": 8192, \"headTimeoutSeconds\": 5,\n"
        "    \"idleTimeoutSeconds\": 120, \"connectTimeoutMs\": 250\n"
        "  }\n"
        "}\n");

    cr_assert_eq(cfg->n_services, 2);
    const struct config_service *s = &cfg->services[0];
    cr_assert_str_eq(s->namespace_, "shop");
    cr_assert_str_eq(s->name, "hello");
    cr_assert_eq(s->n_listen, 2);
    cr_assert_str_eq(s->listen[0].text, "127.0.0.1:18080");
    cr_assert_str_eq(s->listen[1].text, "[::1]:18080");
    cr_assert_eq(s->n_backends, 2);
    cr_assert_str_eq(s->backends[0].text, "127.0.0.1:19080");
    cr_assert_str_eq(s->backends[1].text, "127.0.0.1:19081");
    cr_assert_eq(s->protocol, PROTO_HTTP);
    cr_assert_not_null(s->wake_argv);
    cr_assert_str_eq(s->wake_argv[0], "/bin/sh");
    cr_assert_str_eq(s->wake_argv[1], "-c");
    cr_assert_str_eq(s->wake_argv[2], "exec server 19080");
    cr_assert_null(s->wake_argv[3]);
    cr_assert_eq(s->readiness, READINESS_HTTP_GET);
    cr_assert_str_eq(s->readiness_path, "/ready");
    cr_assert_eq(s->readiness_period_ms, 100);
    cr_assert_eq(s->hold_timeout_s, 30);
    cr_assert_eq(s->max_held_connections, 500);
    cr_assert_eq(s->max_held_bytes, 1048576);
    cr_assert_eq(probe_rules_count(s->probes->rules), 2);
    struct probe_request req = {"GET", 3, "/healthz", 8, NULL, 0, NULL};
    const struct probe_response *r = probe_match(s->probes->rules, &req);
    cr_assert_not_null(r);
    cr_assert_eq(r->status, 204);
    cr_assert_str_eq(r->body, "{}");
    req = (struct probe_request){"POST", 4, "/healthz", 8, NULL, 0, NULL};
    cr_assert_str_eq(probe_match(s->probes->rules, &req)->body, "fallback");

    s = &cfg->services[1];
    cr_assert_str_eq(s->namespace_, "default");
    cr_assert_str_eq(s->name, "db");
    cr_assert_str_eq(s->listen[0].text, "0.0.0.0:15432");
    cr_assert_eq(s->protocol, PROTO_TCP);
    cr_assert_eq(s->readiness, READINESS_TCP);
    cr_assert_null(s->readiness_path);
    cr_assert_null(s->wake_argv);

    cr_assert_eq(cfg->n_shared_listen, 2);
    cr_assert_str_eq(cfg->shared_listen[0].text, "127.0.0.1:8012");
    cr_assert_str_eq(cfg->shared_listen[1].text, "127.0.0.1:8013");

    cr_assert_eq(cfg->limits.max_held_connections, 9000);
    cr_assert_eq(cfg->limits.max_held_bytes, 134217728);
    cr_assert_eq(cfg->limits.hold_buffer_bytes, 16384);
    cr_assert_eq(cfg->limits.max_head_bytes, 8192);
    cr_assert_eq(cfg->limits.head_timeout_s, 5);
    cr_assert_eq(cfg->limits.idle_timeout_s, 120);
    cr_assert_eq(cfg->limits.connect_timeout_ms, 250);
    config_free(cfg);
}

Test(config, omitted_fields_take_their_defaults)
{
    struct config *cfg = parse_ok(one_service(""));
    const struct config_service *s = &cfg->services[0];
    cr_assert_str_eq(s->namespace_, "default");
    cr_assert_eq(s->protocol, PROTO_HTTP);
    cr_assert_null(s->wake_argv);
    cr_assert_eq(s->readiness, READINESS_TCP);
    cr_assert_null(s->readiness_path);
    cr_assert_eq(s->readiness_period_ms, 1000);
    cr_assert_eq(s->hold_timeout_s, 600);
    cr_assert_eq(s->max_held_connections, 10000);
    cr_assert_eq(s->max_held_bytes, 64 * 1024 * 1024);
    cr_assert_not_null(s->probes);
    cr_assert_eq(probe_rules_count(s->probes->rules), 0);
    cr_assert_eq(cfg->n_shared_listen, 0);
    cr_assert_null(cfg->shared_listen);

    struct dp_limits d;
    dp_limits_default(&d);
    cr_assert_eq(d.max_held_connections, 50000);
    cr_assert_eq(d.max_held_bytes, 256 * 1024 * 1024);
    cr_assert_eq(d.hold_buffer_bytes, 64 * 1024);
    cr_assert_eq(d.max_head_bytes, 32 * 1024);
    cr_assert_eq(d.head_timeout_s, 30);
    cr_assert_eq(d.idle_timeout_s, 0);
    cr_assert_eq(d.connect_timeout_ms, 2000);
    const struct dp_limits *l = &cfg->limits;
    cr_assert_eq(l->max_held_connections, d.max_held_connections);
    cr_assert_eq(l->max_held_bytes, d.max_held_bytes);
    cr_assert_eq(l->hold_buffer_bytes, d.hold_buffer_bytes);
    cr_assert_eq(l->max_head_bytes, d.max_head_bytes);
    cr_assert_eq(l->head_timeout_s, d.head_timeout_s);
    cr_assert_eq(l->idle_timeout_s, d.idle_timeout_s);
    cr_assert_eq(l->connect_timeout_ms, d.connect_timeout_ms);
    config_free(cfg);
}

Test(config, http_get_readiness_path_defaults_to_slash)
{
    struct config *cfg = parse_ok(one_service("\"readiness\": {\"httpGet\": {}}"));
    cr_assert_eq(cfg->services[0].readiness, READINESS_HTTP_GET);
    cr_assert_str_eq(cfg->services[0].readiness_path, "/");
    config_free(cfg);
}

Test(config, partial_limits_keep_the_other_defaults)
{
    struct config *cfg =
        parse_ok("{\"services\": [{\"name\": \"a\", \"listen\": [\":1\"], "
                 "\"backends\": [\"127.0.0.1:2\"]}], "
                 "\"limits\": {\"idleTimeoutSeconds\": 0, \"maxHeadBytes\": 1024}}");
    cr_assert_eq(cfg->limits.max_head_bytes, 1024);
    cr_assert_eq(cfg->limits.idle_timeout_s, 0);
    cr_assert_eq(cfg->limits.connect_timeout_ms, 2000);
    cr_assert_eq(cfg->limits.hold_buffer_bytes, 64 * 1024);
    config_free(cfg);
}

Test(config, same_name_in_two_namespaces_and_port_zero_twice_are_fine)
{
    struct config *cfg =
        parse_ok("{\"services\": ["
                 "{\"namespace\": \"a\", \"name\": \"web\", \"listen\": [\"127.0.0.1:0\"], "
                 "\"backends\": [\"127.0.0.1:2\"]},"
                 "{\"namespace\": \"b\", \"name\": \"web\", \"listen\": [\"127.0.0.1:0\"], "
                 "\"backends\": [\"127.0.0.1:2\"]}]}");
    cr_assert_eq(cfg->n_services, 2);
    config_free(cfg);
}

Test(config, load_reads_a_file_and_names_it_in_errors)
{
    char dir[] = "/tmp/hf-config-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/hello.json", dir);

    FILE *f = fopen(path, "w");
    fputs(one_service("\"protocol\": \"tcp\""), f);
    fclose(f);
    struct config *cfg = NULL;
    char err[1024] = "";
    cr_assert_eq(config_load(path, &cfg, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(cfg->services[0].protocol, PROTO_TCP);
    config_free(cfg);

    f = fopen(path, "w");
    fputs("{\"services\": [{\"name\": \"a\", \"listen\": [\":1\"], \"backends\": "
          "[\"127.0.0.1:2\"]}, {\"name\": \"b\", \"listen\": [\":3\"], \"backends\": "
          "[\"127.0.0.1:2\"], \"probeResponse\": [{\"path\": {\"type\": \"Prefix\"}, "
          "\"response\": {}}]}]}",
          f);
    fclose(f);
    cr_assert_eq(config_load(path, &cfg, err, sizeof(err)), -1);
    cr_assert_null(cfg);
    char expect[512];
    snprintf(expect, sizeof(expect),
             "%s: services[1].probeResponse[0].path.type: must be one of Exact, PathPrefix, "
             "RegularExpression",
             path);
    cr_assert_str_eq(err, expect);

    unlink(path);
    cr_assert_eq(config_load(path, &cfg, err, sizeof(err)), -1);
    snprintf(expect, sizeof(expect), "%s: cannot open: No such file or directory", path);
    cr_assert_str_eq(err, expect);
    rmdir(dir);
}

/* ---- malformed JSON ---------------------------------------------------------------------- */

Test(config_error, malformed_json_gives_line_and_column)
{
    cr_assert_str_eq(parse_err("{\n  \"services\": [\n    {\"name\": \"a\",,}\n  ]\n}\n"),
                     "test.json: line 3, column 19: malformed JSON");
    cr_assert_str_eq(parse_err("{\"services\": []} trailing"),
                     "test.json: line 1, column 18: malformed JSON");
    cr_assert_str_eq(parse_err("{\"services\": [\n"),
                     "test.json: line 2, column 1: malformed JSON");
}

Test(config_error, empty_file)
{
    cr_assert_str_eq(parse_err(" \n"), "test.json: the file is empty (expected a JSON object)");
}

Test(config_error, top_level_not_an_object)
{
    cr_assert_str_eq(parse_err("[]"), "test.json: the top level must be an object, not an array");
}

/* ---- keys -------------------------------------------------------------------------------- */

Test(config_error, unknown_keys_at_every_level)
{
    cr_assert_str_eq(parse_err("{\"services\": [], \"service\": []}"),
                     "test.json: unknown key \"service\" (expected one of services, shared, "
                     "limits)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"backend\": []"),
                     "test.json: services[0]: unknown key \"backend\" (expected one of "
                     "namespace, name, listen, backends, protocol, wake, readiness, "
                     "readinessPeriodMs, holdTimeoutSeconds, maxHeldConnections, maxHeldBytes, "
                     "probeResponse, waitingPage)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"wake\": {\"cmd\": [\"x\"]}"),
                     "test.json: services[0].wake: unknown key \"cmd\" (expected one of command)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readiness\": {\"exec\": {}}"),
                     "test.json: services[0].readiness: unknown key \"exec\" (expected one of "
                     "tcp, httpGet)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readiness\": {\"httpGet\": {\"port\": 80}}"),
                     "test.json: services[0].readiness.httpGet: unknown key \"port\" (expected "
                     "one of path)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readiness\": {\"tcp\": {\"port\": 80}}"),
                     "test.json: services[0].readiness.tcp: takes no settings (write {})");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"probeResponse\": [{\"response\": {}, \"x\": 1}]"),
                     "test.json: services[0].probeResponse[0]: unknown key \"x\" (expected path, "
                     "headers, queryParams, method, response)");
    cr_assert_str_eq(parse_err("{" SERVICES ", \"shared\": {\"listen\": [], \"ports\": 1}}"),
                     "test.json: shared: unknown key \"ports\" (expected one of listen)");
    cr_assert_str_eq(parse_err("{" SERVICES ", \"limits\": {\"maxHeldConns\": 1}}"),
                     "test.json: limits: unknown key \"maxHeldConns\" (expected one of "
                     "maxHeldConnections, maxHeldBytes, holdBufferBytes, maxHeadBytes, "
                     "headTimeoutSeconds, idleTimeoutSeconds, connectTimeoutMs)");
}

Test(config_error, duplicate_key)
{
    cr_assert_str_eq(ONE_SERVICE_ERR("\"name\": \"again\""),
                     "test.json: services[0]: key \"name\" appears twice");
}

/* ---- services ---------------------------------------------------------------------------- */

Test(config_error, services_required_non_empty_array_of_objects)
{
    cr_assert_str_eq(parse_err("{}"), "test.json: services: is required");
    cr_assert_str_eq(parse_err("{\"services\": {}}"),
                     "test.json: services: must be an array, not an object");
    cr_assert_str_eq(parse_err("{\"services\": []}"), "test.json: services: must not be empty");
    cr_assert_str_eq(parse_err("{\"services\": [\"hello\"]}"),
                     "test.json: services[0]: must be an object, not a string");
}

Test(config_error, name_required)
{
    cr_assert_str_eq(parse_err("{\"services\": [{\"listen\": [\":1\"], \"backends\": [\":2\"]}]}"),
                     "test.json: services[0].name: is required");
}

Test(config_error, name_and_namespace_must_be_dns_labels)
{
    const char *expect_tail = "is not a DNS-1123 label (lowercase letters, digits and '-', "
                              "starting and ending with a letter or digit, at most 63 "
                              "characters)";
    char expect[512];
    static const char *const bad[] = {"Hello", "-a", "a-", "a_b", "a.b", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char json[512];
        snprintf(json, sizeof(json),
                 "{\"services\": [{\"name\": \"%s\", \"listen\": [\":1\"], \"backends\": "
                 "[\"127.0.0.1:2\"]}]}",
                 bad[i]);
        snprintf(expect, sizeof(expect), "test.json: services[0].name: \"%s\" %s", bad[i],
                 expect_tail);
        cr_assert_str_eq(parse_err(json), expect);
    }
    char long_label[70];
    memset(long_label, 'a', 64);
    long_label[64] = '\0';
    char json[512];
    snprintf(json, sizeof(json), "\"namespace\": \"%s\"", long_label);
    snprintf(expect, sizeof(expect), "test.json: services[0].namespace: \"%s\" %s", long_label,
             expect_tail);
    cr_assert_str_eq(ONE_SERVICE_ERR(json), expect);
    long_label[63] = '\0';
    snprintf(json, sizeof(json), "\"namespace\": \"%s\"", long_label);
    config_free(parse_ok(one_service(json)));
    cr_assert_str_eq(ONE_SERVICE_ERR("\"namespace\": 7"),
                     "test.json: services[0].namespace: must be a string, not a number");
}

Test(config_error, listen_and_backends)
{
    cr_assert_str_eq(parse_err("{\"services\": [{\"name\": \"a\", \"backends\": [\":2\"]}]}"),
                     "test.json: services[0].listen: is required");
    cr_assert_str_eq(
        parse_err("{\"services\": [{\"name\": \"a\", \"listen\": [], \"backends\": [\":2\"]}]}"),
        "test.json: services[0].listen: must not be empty");
    cr_assert_str_eq(parse_err("{\"services\": [{\"name\": \"a\", \"listen\": \":1\", "
                               "\"backends\": [\":2\"]}]}"),
                     "test.json: services[0].listen: must be an array of \"HOST:PORT\" "
                     "strings, not a string");
    cr_assert_str_eq(parse_err("{\"services\": [{\"name\": \"a\", \"listen\": [\":1\", 8080], "
                               "\"backends\": [\":2\"]}]}"),
                     "test.json: services[0].listen[1]: must be a \"HOST:PORT\" string, not a "
                     "number");
    cr_assert_str_eq(parse_err("{\"services\": [{\"name\": \"a\", \"listen\": [\":1\"]}]}"),
                     "test.json: services[0].backends: is required");
    cr_assert_str_eq(parse_err("{\"services\": [{\"name\": \"a\", \"listen\": [\":1\"], "
                               "\"backends\": [\"127.0.0.1:2\", \"example.com:80\"]}]}"),
                     "test.json: services[0].backends[1]: \"example.com:80\": \"example.com\" "
                     "is not a numeric IP address or localhost");
    cr_assert_str_eq(parse_err("{\"services\": [{\"name\": \"a\", \"listen\": [\":1\"], "
                               "\"backends\": [\"127.0.0.1:70000\"]}]}"),
                     "test.json: services[0].backends[0]: \"127.0.0.1:70000\": port must be a "
                     "number from 0 to 65535");
    cr_assert_str_eq(parse_err("{\"services\": [{\"name\": \"a\", \"listen\": [\":1\"], "
                               "\"backends\": [\"127.0.0.1:0\"]}]}"),
                     "test.json: services[0].backends[0]: \"127.0.0.1:0\": a backend needs a "
                     "port other than 0");
}

Test(config_error, protocol_is_http_or_tcp)
{
    cr_assert_str_eq(ONE_SERVICE_ERR("\"protocol\": \"HTTP\""),
                     "test.json: services[0].protocol: must be \"http\" or \"tcp\", not \"HTTP\"");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"protocol\": true"),
                     "test.json: services[0].protocol: must be a string, not a boolean");
}

Test(config_error, wake_command)
{
    cr_assert_str_eq(ONE_SERVICE_ERR("\"wake\": \"systemctl start x\""),
                     "test.json: services[0].wake: must be an object, not a string");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"wake\": {}"),
                     "test.json: services[0].wake.command: is required");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"wake\": {\"command\": []}"),
                     "test.json: services[0].wake.command: must be a non-empty array of strings "
                     "(program, then arguments)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"wake\": {\"command\": \"/bin/true\"}"),
                     "test.json: services[0].wake.command: must be a non-empty array of strings "
                     "(program, then arguments)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"wake\": {\"command\": [\"/bin/sleep\", 1]}"),
                     "test.json: services[0].wake.command[1]: must be a string, not a number");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"wake\": {\"command\": [\"\", \"x\"]}"),
                     "test.json: services[0].wake.command[0]: the program must not be empty");
}

Test(config_error, readiness_is_exactly_one_kind)
{
    const char *one = "test.json: services[0].readiness: must have exactly one of {\"tcp\": {}} "
                      "or {\"httpGet\": {\"path\": \"/\"}}";
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readiness\": {}"), one);
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readiness\": {\"tcp\": {}, \"httpGet\": {}}"), one);
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readiness\": \"tcp\""),
                     "test.json: services[0].readiness: must be an object, not a string");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readiness\": {\"tcp\": true}"),
                     "test.json: services[0].readiness.tcp: must be an object, not a boolean");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readiness\": {\"httpGet\": {\"path\": \"ready\"}}"),
                     "test.json: services[0].readiness.httpGet.path: \"ready\" must start with "
                     "\"/\"");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readiness\": {\"httpGet\": {\"path\": 1}}"),
                     "test.json: services[0].readiness.httpGet.path: must be a string, not a "
                     "number");
}

Test(config_error, numbers_are_integers_of_the_right_type)
{
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readinessPeriodMs\": \"100\""),
                     "test.json: services[0].readinessPeriodMs: must be an integer, not a string");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"holdTimeoutSeconds\": 1.5"),
                     "test.json: services[0].holdTimeoutSeconds: must be an integer from 1 to "
                     "86400");
    cr_assert_str_eq(parse_err("{" SERVICES ", \"limits\": {\"connectTimeoutMs\": null}}"),
                     "test.json: limits.connectTimeoutMs: must be an integer, not null");
}

Test(config_error, numbers_in_range)
{
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readinessPeriodMs\": 9"),
                     "test.json: services[0].readinessPeriodMs: must be an integer from 10 to "
                     "3600000");
    config_free(parse_ok(one_service("\"readinessPeriodMs\": 10")));
    cr_assert_str_eq(ONE_SERVICE_ERR("\"holdTimeoutSeconds\": 0"),
                     "test.json: services[0].holdTimeoutSeconds: must be an integer from 1 to "
                     "86400");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"maxHeldConnections\": -1"),
                     "test.json: services[0].maxHeldConnections: must be an integer from 1 to "
                     "10000000");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"maxHeldBytes\": 1e300"),
                     "test.json: services[0].maxHeldBytes: must be an integer from 1 to "
                     "1099511627776");
    const char *base = "{\"services\": [{\"name\": \"a\", \"listen\": [\":1\"], \"backends\": "
                       "[\"127.0.0.1:2\"]}], \"limits\": {%s}}";
    static const struct {
        const char *member, *message;
    } cases[] = {
        {"\"maxHeldConnections\": 0", "limits.maxHeldConnections: must be an integer from 1 to "
                                      "10000000"},
        {"\"maxHeldBytes\": 0", "limits.maxHeldBytes: must be an integer from 1 to 1099511627776"},
        {"\"holdBufferBytes\": 1023", "limits.holdBufferBytes: must be an integer from 1024 to "
                                      "67108864"},
        {"\"maxHeadBytes\": 2000000", "limits.maxHeadBytes: must be an integer from 1024 to "
                                      "1048576"},
        {"\"headTimeoutSeconds\": 0", "limits.headTimeoutSeconds: must be an integer from 1 to "
                                      "3600"},
        {"\"idleTimeoutSeconds\": -5", "limits.idleTimeoutSeconds: must be an integer from 0 to "
                                       "604800"},
        {"\"connectTimeoutMs\": 0", "limits.connectTimeoutMs: must be an integer from 1 to "
                                    "600000"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char json[512], expect[256];
        const char *hole = strstr(base, "%s");
        snprintf(json, sizeof(json), "%.*s%s%s", (int)(hole - base), base, cases[i].member,
                 hole + 2);
        snprintf(expect, sizeof(expect), "test.json: %s", cases[i].message);
        cr_assert_str_eq(parse_err(json), expect);
    }
}

Test(config_error, shared_and_limits_must_be_objects)
{
    cr_assert_str_eq(parse_err("{" SERVICES ", \"shared\": []}"),
                     "test.json: shared: must be an object, not an array");
    cr_assert_str_eq(parse_err("{" SERVICES ", \"limits\": 5}"),
                     "test.json: limits: must be an object, not a number");
}

Test(config_error, probe_response_error_names_the_full_path)
{
    cr_assert_str_eq(
        ONE_SERVICE_ERR("\"probeResponse\": [{\"response\": {}}, {\"path\": {\"type\": "
                        "\"RegularExpression\", \"value\": \"(\"}, \"response\": {}}]"),
        "test.json: services[0].probeResponse[1].path.value: invalid regular expression at "
        "offset 1: missing closing parenthesis");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"probeResponse\": {}"),
                     "test.json: services[0].probeResponse: must be an array");
}

Test(config_error, probe_response_needs_http)
{
    cr_assert_str_eq(
        ONE_SERVICE_ERR("\"protocol\": \"tcp\", \"probeResponse\": [{\"response\": {}}]"),
        "test.json: services[0].probeResponse: needs \"protocol\": \"http\" (a tcp "
        "service is not parsed)");
    config_free(parse_ok(one_service("\"protocol\": \"tcp\", \"probeResponse\": []")));
}

Test(config, waiting_page_is_read_and_off_by_default)
{
    struct config *cfg = parse_ok(one_service(""));
    cr_assert_not(cfg->services[0].waiting_page.enabled);
    config_free(cfg);
    cfg = parse_ok(one_service("\"waitingPage\": {\"enabled\": true, \"retryAfterSeconds\": 4, "
                               "\"html\": \"<p>soon</p>\"}"));
    const struct waiting_page_spec *p = &cfg->services[0].waiting_page;
    cr_assert(p->enabled);
    cr_assert_eq(p->retry_after_s, 4);
    cr_assert_eq(p->html_len, 11);
    cr_assert_eq(memcmp(p->html, "<p>soon</p>", 11), 0);
    config_free(cfg);
}

Test(config_error, waiting_page_errors_name_the_field)
{
    cr_assert_str_eq(ONE_SERVICE_ERR("\"waitingPage\": {\"retryAfterSeconds\": 3601}"),
                     "test.json: services[0].waitingPage.retryAfterSeconds: must be an integer "
                     "from 1 to 3600");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"waitingPage\": {\"enabled\": \"yes\"}"),
                     "test.json: services[0].waitingPage.enabled: must be true or false, not a "
                     "string");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"waitingPage\": {\"html\": \"\"}"),
                     "test.json: services[0].waitingPage.html: must not be empty (leave it out "
                     "for the built-in page)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"waitingPage\": {\"page\": \"x\"}"),
                     "test.json: services[0].waitingPage: unknown key \"page\" (expected one of "
                     "enabled, retryAfterSeconds, html)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"protocol\": \"tcp\", \"waitingPage\": {\"enabled\": true}"),
                     "test.json: services[0].waitingPage.enabled: needs \"protocol\": \"http\" "
                     "(a tcp service is not parsed)");
    config_free(
        parse_ok(one_service("\"protocol\": \"tcp\", \"waitingPage\": {\"enabled\": false}")));
}

/* ---- strings holding a NUL character --------------------------------------------------------- */

/*
 * JSON can carry a NUL inside a string (\u0000); holdfast's strings end at the first one, so
 * "a\u0000b" would run a service named "a". Every string of the file is checked, the values
 * holdfast reads and the keys, before anything else.
 */
Test(config_error, a_nul_character_in_any_string_is_refused_with_its_path)
{
    cr_assert_str_eq(parse_err("{\"services\": [{\"name\": \"a\\u0000b\", \"listen\": [\":1\"], "
                               "\"backends\": [\"127.0.0.1:2\"]}]}"),
                     "test.json: services[0].name: must not contain a NUL character (\\u0000)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"namespace\": \"shop\\u0000\""),
                     "test.json: services[0].namespace: must not contain a NUL character "
                     "(\\u0000)");
    cr_assert_str_eq(
        parse_err(
            "{\"services\": [{\"name\": \"a\", \"listen\": [\":1\", \"127.0.0.1:8\\u0000x\"], "
            "\"backends\": [\"127.0.0.1:2\"]}]}"),
        "test.json: services[0].listen[1]: must not contain a NUL character (\\u0000)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"wake\": {\"command\": [\"sh\", \"-c\", \"run\\u0000 x\"]}"),
                     "test.json: services[0].wake.command[2]: must not contain a NUL character "
                     "(\\u0000)");
    cr_assert_str_eq(ONE_SERVICE_ERR("\"readiness\": {\"httpGet\": {\"path\": \"/\\u0000\"}}"),
                     "test.json: services[0].readiness.httpGet.path: must not contain a NUL "
                     "character (\\u0000)");
    cr_assert_str_eq(
        ONE_SERVICE_ERR("\"probeResponse\": [{\"headers\": [{\"name\": \"X-Check\", "
                        "\"value\": \"yes\\u0000no\"}], \"response\": {}}]"),
        "test.json: services[0].probeResponse[0].headers[0].value: must not contain a NUL "
        "character (\\u0000)");
    cr_assert_str_eq(
        ONE_SERVICE_ERR("\"probeResponse\": [{\"path\": {\"type\": \"RegularExpression\", "
                        "\"value\": \"^/ok\\u0000|\"}, \"response\": {}}]"),
        "test.json: services[0].probeResponse[0].path.value: must not contain a NUL character "
        "(\\u0000)");
    cr_assert_str_eq(parse_err("{" SERVICES ", \"shared\": {\"listen\": [\"\\u0000\"]}}"),
                     "test.json: shared.listen[0]: must not contain a NUL character (\\u0000)");
    /* A key: "name\u0000x" would read as "name". */
    cr_assert_str_eq(
        parse_err("{\"services\": [{\"name\\u0000x\": \"a\", \"listen\": [\":1\"], "
                  "\"backends\": [\"127.0.0.1:2\"]}]}"),
        "test.json: services[0]: the key \"name\" followed by a NUL character (\\u0000): keys "
        "must not contain one");
}

Test(config, an_escaped_backslash_before_u0000_is_no_nul)
{
    struct config *cfg =
        parse_ok(one_service("\"wake\": {\"command\": [\"echo\", \"a\\\\u0000b\"]}"));
    cr_assert_str_eq(cfg->services[0].wake_argv[1], "a\\u0000b");
    config_free(cfg);
}

/* ---- across services --------------------------------------------------------------------- */

Test(config_error, duplicate_namespace_and_name)
{
    cr_assert_str_eq(
        parse_err("{\"services\": ["
                  "{\"name\": \"web\", \"listen\": [\":1\"], \"backends\": [\"127.0.0.1:9\"]},"
                  "{\"name\": \"api\", \"listen\": [\":2\"], \"backends\": [\"127.0.0.1:9\"]},"
                  "{\"namespace\": \"default\", \"name\": \"web\", \"listen\": [\":3\"], "
                  "\"backends\": [\"127.0.0.1:9\"]}]}"),
        "test.json: services[2].name: default/web is already defined by services[0]");
}

Test(config_error, listen_address_used_twice)
{
    cr_assert_str_eq(parse_err("{\"services\": ["
                               "{\"name\": \"a\", \"listen\": [\":1\", \"127.0.0.1:8080\"], "
                               "\"backends\": [\"127.0.0.1:9\"]},"
                               "{\"name\": \"b\", \"listen\": [\"localhost:8080\"], "
                               "\"backends\": [\"127.0.0.1:9\"]}]}"),
                     "test.json: services[1].listen[0]: 127.0.0.1:8080 is already used by "
                     "services[0].listen[1]");
    cr_assert_str_eq(
        parse_err("{\"services\": [{\"name\": \"a\", \"listen\": [\":1\", \"0.0.0.0:1\"], "
                  "\"backends\": [\"127.0.0.1:9\"]}]}"),
        "test.json: services[0].listen[1]: 0.0.0.0:1 is already used by services[0].listen[0]");
    cr_assert_str_eq(
        parse_err("{\"services\": [{\"name\": \"a\", \"listen\": [\"[::1]:8012\"], "
                  "\"backends\": [\"127.0.0.1:9\"]}], "
                  "\"shared\": {\"listen\": [\"127.0.0.1:8012\", \"[::1]:8012\"]}}"),
        "test.json: shared.listen[1]: [::1]:8012 is already used by services[0].listen[0]");
}

Test(config_error, backend_is_one_of_our_listen_addresses)
{
    cr_assert_str_eq(
        parse_err("{\"services\": ["
                  "{\"name\": \"a\", \"listen\": [\"127.0.0.1:8080\"], "
                  "\"backends\": [\"127.0.0.1:9\"]},"
                  "{\"name\": \"b\", \"listen\": [\"127.0.0.1:8081\"], "
                  "\"backends\": [\"127.0.0.1:9\", \"127.0.0.1:8080\"]}]}"),
        "test.json: services[1].backends[1]: 127.0.0.1:8080 is holdfast's own listen address "
        "(services[0].listen[0]): requests would loop");
}
