/* slices: resolver slices as kube-proxy and ingress controllers need them; ready endpoints. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/slices.h"

static cJSON *service(const char *name)
{
    char buf[512];
    snprintf(buf, sizeof(buf),
             "{\"metadata\":{\"name\":\"%s\",\"namespace\":\"shop\",\"uid\":\"u-1\"}}", name);
    return cJSON_Parse(buf);
}

static const char *s_at(const cJSON *o, const char *path)
{
    char copy[256];
    snprintf(copy, sizeof(copy), "%s", path);
    const cJSON *cur = o;
    for (char *save, *k = strtok_r(copy, "/", &save); k; k = strtok_r(NULL, "/", &save)) {
        if (cJSON_IsArray(cur))
            cur = cJSON_GetArrayItem(cur, atoi(k));
        else
            cur = cJSON_GetObjectItemCaseSensitive(cur, k);
    }
    return cJSON_IsString(cur) ? cur->valuestring : NULL;
}

Test(slices, resolver_slice_has_everything_consumers_read)
{
    cJSON *svc = service("web");
    struct resolver_endpoint eps[] = {
        {"10.0.0.5", "node-a"}, {"fd00::5", "node-b"}, {"10.0.0.6", NULL}};
    struct slice_port ports[] = {{"http", "TCP", NULL, 20001},
                                 {"grpc", NULL, "kubernetes.io/h2c", 20002}};
    cJSON *s = slices_resolver_slice(svc, "IPv4", eps, 3, ports, 2);
    cr_assert_not_null(s);
    const cJSON *labels = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "metadata"), "labels");
    cr_assert_str_eq(cJSON_GetObjectItem(labels, "kubernetes.io/service-name")->valuestring, "web");
    cr_assert_str_eq(
        cJSON_GetObjectItem(labels, "endpointslice.kubernetes.io/managed-by")->valuestring,
        "holdfast");
    cr_assert_eq(cJSON_GetArraySize(labels), 2, "no headless or service-proxy-name label");
    cr_assert(strncmp(s_at(s, "metadata/name"), "web-", 4) == 0, "name starts with <svc>-");
    cr_assert_str_eq(s_at(s, "metadata/namespace"), "shop");
    cr_assert_str_eq(s_at(s, "metadata/ownerReferences/0/kind"), "Service");
    cr_assert_str_eq(s_at(s, "metadata/ownerReferences/0/uid"), "u-1");
    cr_assert_str_eq(s_at(s, "addressType"), "IPv4");
    const cJSON *eps_j = cJSON_GetObjectItem(s, "endpoints");
    cr_assert_eq(cJSON_GetArraySize(eps_j), 2, "only the IPv4 resolver pods");
    const cJSON *e0 = cJSON_GetArrayItem(eps_j, 0);
    cr_assert_str_eq(s_at(e0, "addresses/0"), "10.0.0.5");
    cr_assert_str_eq(s_at(e0, "nodeName"), "node-a");
    const cJSON *cond = cJSON_GetObjectItem(e0, "conditions");
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(cond, "ready")));
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(cond, "serving")));
    cr_assert(cJSON_IsFalse(cJSON_GetObjectItem(cond, "terminating")), "written explicitly");
    cr_assert_null(cJSON_GetObjectItem(e0, "targetRef"));
    cr_assert_null(cJSON_GetObjectItem(cJSON_GetArrayItem(eps_j, 1), "nodeName"));
    const cJSON *p1 = cJSON_GetArrayItem(cJSON_GetObjectItem(s, "ports"), 1);
    cr_assert_str_eq(s_at(p1, "name"), "grpc");
    cr_assert_str_eq(s_at(p1, "protocol"), "TCP");
    cr_assert_eq(cJSON_GetObjectItem(p1, "port")->valueint, 20002);
    cr_assert_str_eq(s_at(p1, "appProtocol"), "kubernetes.io/h2c");
    cr_assert(slices_is_resolver_slice(s));
    cr_assert_not(slices_is_controller_slice(s));
    cJSON_Delete(s);

    cJSON *s6 = slices_resolver_slice(svc, "IPv6", eps, 3, ports, 2);
    cr_assert_str_eq(s_at(s6, "addressType"), "IPv6");
    cr_assert_eq(cJSON_GetArraySize(cJSON_GetObjectItem(s6, "endpoints")), 1);
    cr_assert_str_neq(s_at(s6, "metadata/name"), "web-holdfast", "one name per family");
    cJSON_Delete(s6);
    cJSON_Delete(svc);
}

Test(slices, unnamed_single_port_keeps_the_empty_name)
{
    cJSON *svc = service("web");
    struct slice_port ports[] = {{"", NULL, NULL, 20000}};
    struct resolver_endpoint eps[] = {{"10.0.0.5", "n"}};
    cJSON *s = slices_resolver_slice(svc, "IPv4", eps, 1, ports, 1);
    cr_assert_str_eq(s_at(s, "ports/0/name"), "");
    cJSON_Delete(s);
    cJSON_Delete(svc);
}

Test(slices, long_names_fit_63_characters_and_stay_unique)
{
    char a[80], b[80];
    const char *long1 = "a-very-long-service-name-that-is-exactly-sixty-three-characters";
    const char *long2 = "a-very-long-service-name-that-is-exactly-sixty-three-characterz";
    names_fit(a, sizeof(a), long1, "holdfast", 63);
    names_fit(b, sizeof(b), long2, "holdfast", 63);
    cr_assert_leq(strlen(a), 63, "%s", a);
    cr_assert_str_neq(a, b, "a hash keeps cut names apart");
    cr_assert(strncmp(a, "a-very-long", 11) == 0);
    cr_assert_neq(a[strlen(a) - 1], '-');
    names_fit(a, sizeof(a), "web", "holdfast", 63);
    cr_assert_str_eq(a, "web-holdfast", "short names are left alone");
    names_fit(a, sizeof(a), "web-abc12", "", 63); /* found by tests/fuzz kube_objects */
    cr_assert_str_eq(a, "web-abc12", "no '-' last, even from an empty suffix");
    names_fit(a, sizeof(a), "web", "x--", 63);
    cr_assert_str_eq(a, "web-x");
    names_fit(a, sizeof(a), "x",
              "a-suffix-that-is-much-too-long-to-fit-in-sixty-three-characters-at-all", 63);
    cr_assert_leq(strlen(a), 63, "%s", a);
}

Test(slices, ready_endpoints_follow_conditions_and_port_names)
{
    cJSON *s = cJSON_Parse(
        "{\"metadata\":{\"labels\":{\"endpointslice.kubernetes.io/managed-by\":"
        "\"endpointslice-controller.k8s.io\"}},"
        "\"ports\":[{\"name\":\"http\",\"port\":8080},{\"name\":\"metrics\",\"port\":9090}],"
        "\"endpoints\":["
        "{\"addresses\":[\"10.1.0.1\"],\"conditions\":{\"ready\":true}},"
        "{\"addresses\":[\"10.1.0.2\"],\"conditions\":{\"ready\":false}},"
        "{\"addresses\":[\"10.1.0.3\"],\"conditions\":{}},"
        "{\"addresses\":[\"10.1.0.4\"],\"conditions\":{\"ready\":true,\"terminating\":true}}]}");
    cr_assert(slices_is_controller_slice(s));
    struct ready_endpoint *eps = NULL;
    size_t n = 0;
    cr_assert_eq(slices_ready_endpoints(s, "metrics", &eps, &n), 0);
    cr_assert_eq(n, 2, "ready, and absent ready (means ready); not unready, not terminating");
    cr_assert_str_eq(eps[0].ip, "10.1.0.1");
    cr_assert_eq(eps[0].port, 9090, "the port number comes from the slice, by name");
    cr_assert_str_eq(eps[1].ip, "10.1.0.3");
    cr_assert_eq(slices_ready_endpoints(s, "grpc", &eps, &n), 0);
    cr_assert_eq(n, 2, "a port the slice does not have adds nothing");
    free(eps);
    cJSON_Delete(s);
}

/* ---- the compact form the controller's cache keeps (slices_decode) ---- */

static struct slice_cached *decode_ok(const char *json)
{
    cJSON *o = cJSON_Parse(json);
    cr_assert_not_null(o, "bad test JSON: %s", json);
    char err[256] = "";
    struct slice_cached *s = slices_decode(o, err, sizeof(err));
    cr_assert_not_null(s, "not decoded: %s", err);
    cJSON_Delete(o);
    return s;
}

/* The ready endpoints of port `port` read from the object and from its decoded form agree. */
static void same_ready(const char *json, const char *port)
{
    cJSON *o = cJSON_Parse(json);
    cr_assert_not_null(o, "bad test JSON: %s", json);
    char err[256] = "";
    struct slice_cached *s = slices_decode(o, err, sizeof(err));
    cr_assert_not_null(s, "not decoded: %s (%s)", err, json);
    struct ready_endpoint *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    cr_assert_eq(slices_ready_endpoints(o, port, &a, &na), 0);
    cr_assert_eq(slices_cached_ready_endpoints(s, port, &b, &nb), 0);
    cr_expect_eq(na, nb, "port %s of %s: %zu ready from the object, %zu decoded", port, json, na,
                 nb);
    for (size_t i = 0; i < na && i < nb; i++) {
        cr_expect_str_eq(a[i].ip, b[i].ip, "port %s of %s, endpoint %zu", port, json, i);
        cr_expect_eq(a[i].port, b[i].port, "port %s of %s, endpoint %zu", port, json, i);
    }
    cr_expect_eq(slices_is_resolver_slice(o), s->manager == SLICE_HOLDFAST);
    cr_expect_eq(slices_is_controller_slice(o), s->manager == SLICE_CONTROLLER);
    free(a);
    free(b);
    slices_cached_free(s);
    cJSON_Delete(o);
}

#define CONTROLLER_LABELS                                                                          \
    "\"labels\":{\"kubernetes.io/service-name\":\"web\",\"endpointslice.kubernetes.io/"            \
    "managed-by\":"                                                                                \
    "\"endpointslice-controller.k8s.io\",\"app\":\"web\"}"

Test(slices_decode, every_field_the_controller_reads_survives)
{
    struct slice_cached *s = decode_ok(
        "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"addressType\":"
        "\"IPv4\",\"metadata\":{\"name\":\"web-abcde\",\"namespace\":\"shop\",\"uid\":\"u-9\","
        "\"resourceVersion\":\"1234\",\"generateName\":\"web-\"," CONTROLLER_LABELS "},"
        "\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"},{\"name\":\"metrics\","
        "\"port\":9090}],\"endpoints\":["
        "{\"addresses\":[\"10.1.0.1\"],\"conditions\":{\"ready\":true},\"nodeName\":\"n1\","
        "\"targetRef\":{\"kind\":\"Pod\",\"name\":\"web-1\"},\"zone\":\"a\"},"
        "{\"addresses\":[\"10.1.0.2\"],\"conditions\":{\"ready\":false}},"
        "{\"addresses\":[\"10.1.0.3\"],\"conditions\":{\"terminating\":false}}]}");
    cr_expect_str_eq(s->ns, "shop");
    cr_expect_str_eq(s->name, "web-abcde");
    cr_expect_str_eq(s->uid, "u-9");
    cr_expect_str_eq(s->resource_version, "1234");
    cr_expect_str_eq(s->service, "web");
    cr_expect_eq(s->manager, SLICE_CONTROLLER);
    cr_assert_eq(s->n_ports, 2);
    cr_expect_str_eq(s->ports[0].name, "http");
    cr_expect_eq(s->ports[0].port, 8080);
    cr_expect_str_eq(s->ports[1].name, "metrics");
    cr_expect_eq(s->ports[1].port, 9090);
    cr_assert_eq(s->n_ready, 2, "ready, and ready absent; not the unready one");
    cr_expect_str_eq(s->ready[0], "10.1.0.1");
    cr_expect_str_eq(s->ready[1], "10.1.0.3");
    cr_expect_null(s->endpoints, "only a resolver slice keeps its endpoints whole");
    cr_expect_null(s->ports_json);
    struct ready_endpoint *eps = NULL;
    size_t n = 0;
    cr_assert_eq(slices_cached_ready_endpoints(s, "metrics", &eps, &n), 0);
    cr_assert_eq(n, 2);
    cr_expect_str_eq(eps[1].ip, "10.1.0.3");
    cr_expect_eq(eps[1].port, 9090);
    free(eps);
    slices_cached_free(s);
}

Test(slices_decode, a_resolver_slice_keeps_its_endpoints_and_ports_whole)
{
    cJSON *svc = service("web");
    struct resolver_endpoint eps[] = {{"10.9.0.1", "node-a"}};
    struct slice_port ports[] = {{"http", "TCP", NULL, 30001}};
    cJSON *want = slices_resolver_slice(svc, "IPv4", eps, 1, ports, 1);
    cr_assert_not_null(want);
    char err[256];
    struct slice_cached *s = slices_decode(want, err, sizeof(err));
    cr_assert_not_null(s, "%s", err);
    cr_expect_eq(s->manager, SLICE_HOLDFAST);
    cr_expect_str_eq(s->service, "web");
    cr_expect(cJSON_Compare(s->endpoints, cJSON_GetObjectItemCaseSensitive(want, "endpoints"), 1),
              "the endpoints are compared whole with what holdfast would write");
    cr_expect(cJSON_Compare(s->ports_json, cJSON_GetObjectItemCaseSensitive(want, "ports"), 1));
    slices_cached_free(s);
    cJSON_Delete(want);
    cJSON_Delete(svc);
}

Test(slices_decode, a_missing_field_reads_as_it_did_from_the_object)
{
    /* no uid, resourceVersion, labels, ports, endpoints: decoded, and nothing ready */
    struct slice_cached *s = decode_ok("{\"metadata\":{\"name\":\"x\",\"namespace\":\"n\"}}");
    cr_expect_null(s->uid);
    cr_expect_null(s->resource_version);
    cr_expect_null(s->service, "no service-name label: filed under no Service");
    cr_expect_eq(s->manager, SLICE_OTHER);
    cr_expect_eq(s->n_ports, 0);
    cr_expect_eq(s->n_ready, 0);
    slices_cached_free(s);
    static const char *const odd[] = {
        /* an unnamed port is "", a port without a number is skipped (the next one counts) */
        "{\"metadata\":{\"name\":\"x\",\"namespace\":\"n\"," CONTROLLER_LABELS "},\"ports\":["
        "{\"port\":80},{\"name\":\"http\"},{\"name\":\"http\",\"port\":81}],\"endpoints\":["
        "{\"addresses\":[\"10.0.0.1\"]},{\"addresses\":[]},{\"conditions\":{\"ready\":true}},"
        "{\"addresses\":[7,\"10.0.0.2\"]},{\"addresses\":[\"10.0.0.3\",\"10.0.0.4\"],"
        "\"conditions\":{\"ready\":null,\"terminating\":null}},"
        "{\"addresses\":[\"10.0.0.5\"],\"conditions\":{\"ready\":\"yes\"}},"
        "{\"addresses\":[\"0123456789012345678901234567890123456789012345678901234567890123\"]},"
        "{\"addresses\":[\"10.0.0.6\"],\"conditions\":{\"serving\":false,\"terminating\":true}}]}",
        /* fields of the wrong type */
        "{\"metadata\":{\"name\":\"x\",\"namespace\":\"n\",\"uid\":5,\"labels\":{"
        "\"kubernetes.io/service-name\":1,\"endpointslice.kubernetes.io/managed-by\":true}},"
        "\"ports\":\"http\",\"endpoints\":{\"a\":{\"addresses\":[\"10.0.0.1\"]}}}",
        "{\"metadata\":{\"name\":\"x\",\"namespace\":\"n\"," CONTROLLER_LABELS "},\"ports\":{"
        "\"p\":{\"name\":\"http\",\"port\":80}},\"endpoints\":[{\"addresses\":{\"a\":\"10.0.0.1\"},"
        "\"conditions\":[true]},5,null]}",
    };
    static const char *const port_names[] = {"", "http", "metrics"};
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++)
        for (size_t p = 0; p < sizeof(port_names) / sizeof(port_names[0]); p++)
            same_ready(odd[i], port_names[p]);
}

Test(slices_decode, a_slice_without_name_or_namespace_is_refused_by_name)
{
    static const struct {
        const char *json, *error;
    } bad[] = {
        {"{\"metadata\":{\"namespace\":\"shop\"}}", "EndpointSlice shop/?: metadata.name"},
        {"{\"metadata\":{\"name\":\"web-1\"}}", "EndpointSlice ?/web-1: metadata.namespace"},
        {"{\"metadata\":{\"name\":3,\"namespace\":\"shop\"}}",
         "EndpointSlice shop/?: metadata.name"},
        {"[1,2]", "EndpointSlice ?/?: metadata.name"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *o = cJSON_Parse(bad[i].json);
        cr_assert_not_null(o);
        char err[256] = "";
        cr_expect_null(slices_decode(o, err, sizeof(err)), "%s was decoded", bad[i].json);
        cr_expect(strncmp(err, bad[i].error, strlen(bad[i].error)) == 0, "%s: %s", bad[i].json,
                  err);
        cJSON_Delete(o);
    }
}
