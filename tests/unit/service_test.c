/*
 * service: the compact form of a Service the controller's cache keeps (service_decode). Every
 * field the controller reads survives; what an object lacks reads as it did from the object
 * (NULL strings, no number); a Service without a name or namespace is refused by name.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/service.h"

static struct service_cached *decode_ok(const char *json)
{
    cJSON *o = cJSON_Parse(json);
    cr_assert_not_null(o, "bad test JSON: %s", json);
    char err[256] = "";
    struct service_cached *s = service_decode(o, err, sizeof(err));
    cr_assert_not_null(s, "not decoded: %s", err);
    cJSON_Delete(o);
    return s;
}

Test(service, every_field_the_controller_reads_survives)
{
    struct service_cached *s = decode_ok(
        "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"web\",\"namespace\":"
        "\"shop\",\"uid\":\"u-1\",\"resourceVersion\":\"77\",\"labels\":{\"app\":\"web\"},"
        "\"managedFields\":[{}]},\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"10.96.0.10\","
        "\"clusterIPs\":[\"10.96.0.10\"],\"selector\":{\"app\":\"web\"},\"ports\":["
        "{\"name\":\"http\",\"port\":80,\"protocol\":\"TCP\",\"targetPort\":8080},"
        "{\"name\":\"grpc\",\"port\":9000,\"protocol\":\"TCP\",\"appProtocol\":\"kubernetes.io/"
        "h2c\",\"targetPort\":\"grpc-port\"},"
        "{\"name\":\"dns\",\"port\":53,\"protocol\":\"UDP\"}]},\"status\":{\"loadBalancer\":{}}}");
    cr_expect_str_eq(s->ns, "shop");
    cr_expect_str_eq(s->name, "web");
    cr_expect_str_eq(s->uid, "u-1");
    cr_expect_str_eq(s->resource_version, "77");
    cr_expect_str_eq(s->type, "ClusterIP");
    cr_expect_str_eq(s->cluster_ip, "10.96.0.10");
    cr_expect(s->ports_is_array);
    cr_assert_eq(s->n_ports, 3);
    cr_expect_str_eq(s->ports[0].name, "http");
    cr_expect_str_eq(s->ports[0].protocol, "TCP");
    cr_expect_null(s->ports[0].app_protocol);
    cr_expect(s->ports[0].has_port);
    cr_expect_eq(s->ports[0].port, 80);
    cr_expect_str_eq(s->ports[1].app_protocol, "kubernetes.io/h2c");
    cr_expect_eq(s->ports[1].port, 9000);
    /* targetPort, where early readiness sends to a pod: a number, a container port's name, or
     * absent (the Service port) */
    cr_expect_eq(s->ports[0].target_port, 8080);
    cr_expect_null(s->ports[0].target_port_name);
    cr_expect_eq(s->ports[1].target_port, 0);
    cr_expect_str_eq(s->ports[1].target_port_name, "grpc-port");
    cr_expect_eq(s->ports[2].target_port, 0);
    cr_expect_null(s->ports[2].target_port_name);
    cr_expect_str_eq(s->ports[2].protocol, "UDP");
    service_cached_free(s);
}

Test(service, a_missing_field_reads_as_it_did_from_the_object)
{
    struct service_cached *s =
        decode_ok("{\"metadata\":{\"name\":\"web\",\"namespace\":\"shop\"}}");
    cr_expect_null(s->uid);
    cr_expect_null(s->resource_version);
    cr_expect_null(s->type);
    cr_expect_null(s->cluster_ip, "no clusterIP: no data-path probe target");
    cr_expect_not(s->ports_is_array, "no ports: the allocated resolver ports are kept");
    cr_expect_eq(s->n_ports, 0);
    service_cached_free(s);
    /* an unnamed port, one without a number, a member that is no object, and wrong types:
     * every member is kept in order, as cJSON_ArrayForEach walks it */
    s = decode_ok("{\"metadata\":{\"name\":\"web\",\"namespace\":\"shop\"},\"spec\":{\"type\":7,"
                  "\"clusterIP\":\"None\",\"ports\":[{\"port\":80},{\"name\":\"x\"},5,"
                  "{\"name\":1,\"port\":\"80\",\"protocol\":null,\"appProtocol\":[]}]}}");
    cr_expect_null(s->type);
    cr_expect_str_eq(s->cluster_ip, "None");
    cr_assert_eq(s->n_ports, 4);
    cr_expect_null(s->ports[0].name);
    cr_expect(s->ports[0].has_port);
    cr_expect_str_eq(s->ports[1].name, "x");
    cr_expect_not(s->ports[1].has_port);
    cr_expect_null(s->ports[2].name);
    cr_expect_not(s->ports[2].has_port);
    cr_expect_null(s->ports[3].name);
    cr_expect_null(s->ports[3].protocol);
    cr_expect_null(s->ports[3].app_protocol);
    cr_expect_not(s->ports[3].has_port, "a port given as a string is no number");
    service_cached_free(s);
    /* ports as an object: walked as before (its members), but not an array */
    s = decode_ok("{\"metadata\":{\"name\":\"web\",\"namespace\":\"shop\"},\"spec\":{\"ports\":"
                  "{\"a\":{\"name\":\"http\",\"port\":80}}}}");
    cr_expect_not(s->ports_is_array);
    cr_assert_eq(s->n_ports, 1);
    cr_expect_str_eq(s->ports[0].name, "http");
    service_cached_free(s);
}

Test(service, a_service_without_name_or_namespace_is_refused_by_name)
{
    static const struct {
        const char *json, *error;
    } bad[] = {
        {"{\"metadata\":{\"namespace\":\"shop\"}}", "Service shop/?: metadata.name"},
        {"{\"metadata\":{\"name\":\"web\"}}", "Service ?/web: metadata.namespace"},
        {"{\"metadata\":{\"name\":\"web\",\"namespace\":false}}",
         "Service ?/web: metadata.namespace"},
        {"\"web\"", "Service ?/?: metadata.name"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cJSON *o = cJSON_Parse(bad[i].json);
        cr_assert_not_null(o);
        char err[256] = "";
        cr_expect_null(service_decode(o, err, sizeof(err)), "%s was decoded", bad[i].json);
        cr_expect(strncmp(err, bad[i].error, strlen(bad[i].error)) == 0, "%s: %s", bad[i].json,
                  err);
        cJSON_Delete(o);
    }
}
