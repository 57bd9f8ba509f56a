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
