/*
 * lean: the informers keep only what holdfast reads. The transforms over objects as an API
 * server sends them (controller/lean.h), and the real controller's caches after its lists and
 * watches (over the scripted HTTP stand-in of tests/fuzz, objects with managedFields and
 * kubectl's last-applied-configuration): the dropped fields are gone, the read ones are there.
 * And an ElastiService's spec is parsed once per generation, not on every informer event:
 * counted (holdfast_controller_spec_parses_total), not timed.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <event2/event.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "controller/controller.h"
#include "controller/escached.h"
#include "controller/lean.h"
#include "controller/service.h"
#include "controller/slices.h"
#include "resolver/worker.h"
#include "tests/fuzz/fake_cluster.h"

#define N 20

static cJSON *parse(const char *text)
{
    cJSON *o = cJSON_Parse(text);
    cr_assert_not_null(o, "bad test JSON: %s", text);
    return o;
}

static const cJSON *at(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && o;
         k = strtok_r(NULL, ".", &save)) {
        char *end;
        long i = strtol(k, &end, 10);
        o = *end == '\0' ? cJSON_GetArrayItem(o, (int)i) : cJSON_GetObjectItemCaseSensitive(o, k);
    }
    return o;
}

static void has(const cJSON *o, const char *path)
{
    cr_expect_not_null(at(o, path), "%s was dropped", path);
}

static void gone(const cJSON *o, const char *path)
{
    cr_expect_null(at(o, path), "%s was kept", path);
}

/* metadata.labels[key] (label keys hold dots) */
static const cJSON *label(const cJSON *o, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(at(o, "metadata.labels"), key);
}

Test(lean, elastiservice_keeps_identity_finalizers_spec_and_status_whole)
{
    cJSON *o = parse(
        "{\"apiVersion\":\"elasti.truefoundry.com/v1alpha1\",\"kind\":\"ElastiService\","
        "\"metadata\":{\"name\":\"a\",\"namespace\":\"n\",\"uid\":\"u\",\"resourceVersion\":\"7\","
        "\"generation\":3,\"creationTimestamp\":\"2026-01-01T00:00:00Z\",\"deletionTimestamp\":"
        "\"2026-01-02T00:00:00Z\",\"finalizers\":[\"x\"],\"labels\":{\"app\":\"a\"},"
        "\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":\"{}\"},"
        "\"managedFields\":[{\"manager\":\"kubectl\"}],\"ownerReferences\":[{\"name\":\"o\"}]},"
        "\"spec\":{\"service\":\"a\",\"triggers\":[{\"type\":\"prometheus\"}],\"probeResponse\":"
        "{\"x\":1},\"somethingNew\":true},"
        "\"status\":{\"mode\":\"proxy\",\"ports\":[{\"name\":\"http\",\"resolverPort\":1}],"
        "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"r\",\"message\":"
        "\"m\",\"lastTransitionTime\":\"t\",\"observedGeneration\":3}],\"other\":1}}");
    lean_elastiservice(o);
    for (const char *const *k =
             (const char *const[]){"metadata.name", "metadata.namespace", "metadata.uid",
                                   "metadata.resourceVersion", "metadata.generation",
                                   "metadata.creationTimestamp", "metadata.deletionTimestamp",
                                   "metadata.finalizers.0", NULL};
         *k; k++)
        has(o, *k);
    gone(o, "apiVersion");
    gone(o, "kind");
    gone(o, "metadata.labels");
    gone(o, "metadata.annotations");
    gone(o, "metadata.managedFields");
    gone(o, "metadata.ownerReferences");
    /* spec and status whole: the spec is parsed whole, the conditions written back whole */
    cJSON *want_spec = parse("{\"service\":\"a\",\"triggers\":[{\"type\":\"prometheus\"}],"
                             "\"probeResponse\":{\"x\":1},\"somethingNew\":true}");
    cr_expect(cJSON_Compare(at(o, "spec"), want_spec, 1));
    has(o, "status.conditions.0.lastTransitionTime");
    has(o, "status.conditions.0.observedGeneration");
    has(o, "status.ports.0.resolverPort");
    has(o, "status.other");
    cJSON_Delete(want_spec);
    cJSON_Delete(o);
}

Test(lean, service_keeps_type_cluster_ip_and_ports)
{
    cJSON *o = parse(
        "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{\"name\":\"a\",\"namespace\":"
        "\"n\",\"uid\":\"u\",\"resourceVersion\":\"7\",\"labels\":{\"app\":\"a\"},"
        "\"annotations\":{\"kubectl.kubernetes.io/last-applied-configuration\":\"{}\"},"
        "\"managedFields\":[{\"manager\":\"kubectl\"}],\"creationTimestamp\":\"t\"},"
        "\"spec\":{\"type\":\"ClusterIP\",\"clusterIP\":\"None\",\"clusterIPs\":[\"None\"],"
        "\"selector\":{\"app\":\"a\"},\"ports\":[{\"name\":\"http\",\"port\":80,\"protocol\":"
        "\"TCP\",\"appProtocol\":\"h2c\",\"targetPort\":8080,\"nodePort\":30000}]},"
        "\"status\":{\"loadBalancer\":{}}}");
    lean_service(o);
    has(o, "metadata.name");
    has(o, "metadata.namespace");
    has(o, "metadata.uid"); /* the resolver slices' ownerReference */
    has(o, "metadata.resourceVersion");
    has(o, "spec.type");
    has(o, "spec.clusterIP");
    has(o, "spec.ports.0.name");
    has(o, "spec.ports.0.port");
    has(o, "spec.ports.0.protocol");
    has(o, "spec.ports.0.appProtocol");
    has(o, "spec.ports.0.targetPort"); /* early readiness: the pod's port */
    gone(o, "apiVersion");
    gone(o, "metadata.labels");
    gone(o, "metadata.annotations");
    gone(o, "metadata.managedFields");
    gone(o, "metadata.creationTimestamp");
    gone(o, "spec.clusterIPs");
    gone(o, "spec.selector");
    gone(o, "spec.ports.0.nodePort");
    gone(o, "status");
    cJSON_Delete(o);
}

static const char *const slice_text =
    "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\",\"addressType\":\"IPv4\","
    "\"metadata\":{\"name\":\"a-x\",\"namespace\":\"n\",\"uid\":\"u\",\"resourceVersion\":\"7\","
    "\"generateName\":\"a-\",\"labels\":{\"kubernetes.io/service-name\":\"a\","
    "\"endpointslice.kubernetes.io/managed-by\":\"%s\",\"app\":\"a\"},"
    "\"annotations\":{\"endpoints.kubernetes.io/last-change-trigger-time\":\"t\"},"
    "\"managedFields\":[{\"manager\":\"kcm\"}],\"ownerReferences\":[{\"name\":\"a\"}]},"
    "\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\",\"appProtocol\":\"h2c\"}],"
    "\"endpoints\":[{\"addresses\":[\"10.0.0.1\"],\"conditions\":{\"ready\":true,\"serving\":"
    "true,\"terminating\":false},\"nodeName\":\"n1\",\"zone\":\"z\",\"hints\":{\"forZones\":[]},"
    "\"targetRef\":{\"kind\":\"Pod\",\"name\":\"p\",\"uid\":\"pu\"}}]}";

Test(lean, endpointslice_keeps_its_service_endpoints_and_ports)
{
    char text[2048];
    snprintf(text, sizeof(text), slice_text, "endpointslice-controller.k8s.io");
    cJSON *o = parse(text);
    lean_endpointslice(o);
    has(o, "metadata.name");
    has(o, "metadata.uid");
    has(o, "metadata.resourceVersion");
    cr_expect_not_null(label(o, "kubernetes.io/service-name"),
                       "label kubernetes.io/service-name was dropped");
    cr_expect_not_null(label(o, "endpointslice.kubernetes.io/managed-by"),
                       "label endpointslice.kubernetes.io/managed-by was dropped");
    has(o, "ports.0.appProtocol");
    has(o, "endpoints.0.addresses.0");
    has(o, "endpoints.0.conditions.ready");
    has(o, "endpoints.0.conditions.terminating");
    has(o, "endpoints.0.nodeName"); /* the resolver's own pods: their node */
    gone(o, "apiVersion");
    gone(o, "addressType");
    gone(o, "metadata.generateName");
    cr_expect_null(label(o, "app"), "label app was kept");
    gone(o, "metadata.annotations");
    gone(o, "metadata.managedFields");
    gone(o, "metadata.ownerReferences");
    gone(o, "endpoints.0.zone");
    gone(o, "endpoints.0.hints");
    gone(o, "endpoints.0.targetRef");
    cJSON_Delete(o);
}

/* holdfast compares its resolver slices' endpoints whole with what it would write: a field
 * someone added by hand must still show as a difference, so they are kept whole. */
Test(lean, a_resolver_slice_keeps_its_endpoints_whole)
{
    char text[2048];
    snprintf(text, sizeof(text), slice_text, "holdfast");
    cJSON *o = parse(text);
    lean_endpointslice(o);
    has(o, "endpoints.0.zone");
    has(o, "endpoints.0.targetRef");
    gone(o, "metadata.managedFields");
    cr_expect_null(label(o, "app"), "label app was kept");
    cJSON_Delete(o);
}

Test(lean, workload_keeps_identity_replicas_selector_and_what_says_it_is_steady)
{
    cJSON *o = parse("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{"
                     "\"name\":\"a\",\"namespace\":\"n\",\"uid\":\"u\",\"resourceVersion\":\"7\","
                     "\"generation\":4,\"managedFields\":[{}]},\"spec\":{\"replicas\":0,"
                     "\"selector\":{\"matchLabels\":{\"app\":\"a\"}},\"template\":{}},\"status\":{"
                     "\"replicas\":1,\"observedGeneration\":4,"
                     "\"readyReplicas\":1,\"terminatingReplicas\":0,\"conditions\":[{}]}}");
    lean_workload(o);
    has(o, "metadata.uid");
    has(o, "metadata.generation");
    has(o, "spec.replicas");
    has(o, "spec.selector.matchLabels.app");
    has(o, "status.observedGeneration");
    has(o, "status.readyReplicas");
    has(o, "status.terminatingReplicas");
    gone(o, "metadata.managedFields");
    gone(o, "spec.template");
    gone(o, "status.replicas");
    gone(o, "status.conditions");
    cJSON_Delete(o);
}

/* ---- the real controller's caches ---- */

static struct dataplane *dp;
static struct event_base *base;
static struct fake_cluster *fc;

static void setup(void)
{
    log_set_level(LOG_ERROR);
    struct dp_limits limits;
    dp_limits_default(&limits);
    dp = dataplane_new(2, &limits);
    base = event_base_new();
    cr_assert(dp && base);
    char err[512] = "";
    cr_assert_eq(dataplane_start(dp, err, sizeof(err)), 0, "%s", err);
    char bind[32];
    snprintf(bind, sizeof(bind), "127.0.15.%d", (int)(getpid() % 250) + 1);
    fake_cluster_full_objects(true);
    fc = fake_cluster_start(base, dp, N, bind, 42000, err, sizeof(err));
    cr_assert_not_null(fc, "%s", err);
}

static void teardown(void)
{
    fake_cluster_free(fc);
    fake_cluster_full_objects(false);
    dataplane_stop(dp);
    dataplane_free(dp);
    event_base_free(base);
}

TestSuite(lean_caches, .init = setup, .fini = teardown, .timeout = 60);

Test(lean_caches, the_informers_cache_only_what_holdfast_reads)
{
    struct controller *c = fake_cluster_controller(fc);
    fake_cluster_set_ready(fc, 3, true); /* a watch event goes through the transform too */
    fake_cluster_settle(fc);
    const struct es_cached *es = controller_cached(c, "elastiservices", "bench", "svc-3");
    const struct service_cached *svc = controller_cached(c, "services", "bench", "svc-3");
    const struct slice_cached *slice =
        controller_cached(c, "endpointslices", "bench", "svc-3-abcde");
    cr_assert(es && svc && slice, "not cached");
    /* ElastiServices are cached compact (escached.h): the handlers parse the event's tree
     * into struct es; the cache keeps what is read again (identity, finalizers) */
    cr_expect_str_eq(es->ns, "bench");
    cr_expect_str_eq(es->name, "svc-3");
    cr_expect_not_null(es->uid);
    cr_expect_not_null(es->resource_version);
    cr_assert_eq(es->n_finalizers, 1);
    cr_expect_str_eq(es->finalizers[0], "elasti.truefoundry.com/finalizer");
    /* Services are cached compact (service.h): what the controller reads of them */
    cr_expect_not_null(svc->uid);
    cr_expect_not_null(svc->resource_version);
    cr_assert_eq(svc->n_ports, 1);
    cr_expect(svc->ports[0].has_port, "spec.ports[0].port was dropped");
    /* EndpointSlices are cached compact (slices.h): what the controller reads of them */
    cr_expect_str_eq(slice->service, "svc-3", "label kubernetes.io/service-name was dropped");
    cr_expect_eq(slice->manager, SLICE_CONTROLLER);
    cr_expect_not_null(slice->uid);
    cr_expect_not_null(slice->resource_version);
    cr_assert_eq(slice->n_ports, 1);
    cr_expect_eq(slice->n_ready, 1, "the ready endpoint of the watch event");
    cr_expect_null(slice->endpoints, "a Service's own slice keeps only its ready addresses");
}

/* The guard of issue 13: an ElastiService is cached as one small allocation holding all its
 * strings (its tree without the spec took 1,824 bytes with 28 allocations; the whole object
 * several KB), counted in bytes, for every ElastiService of the list. */
Test(lean_caches, an_elastiservice_is_cached_compact)
{
    struct controller *c = fake_cluster_controller(fc);
    fake_cluster_settle(fc);
    for (int i = 0; i < N; i++) {
        char name[32];
        snprintf(name, sizeof(name), "svc-%d", i);
        const struct es_cached *es = controller_cached(c, "elastiservices", "bench", name);
        cr_assert_not_null(es, "%s not cached", name);
        size_t bytes = malloc_usable_size((void *)es);
        cr_expect_leq(bytes, 256, "%s is cached in %zu bytes", name, bytes);
        uintptr_t lo = (uintptr_t)es, hi = lo + bytes;
        const char *strs[] = {es->ns, es->name, es->uid, es->resource_version};
        for (size_t k = 0; k < sizeof(strs) / sizeof(strs[0]); k++)
            cr_expect(strs[k] && (uintptr_t)strs[k] >= lo && (uintptr_t)strs[k] < hi,
                      "%s: a string outside its one allocation", name);
        for (size_t k = 0; k < es->n_finalizers; k++)
            cr_expect((uintptr_t)es->finalizers[k] >= lo && (uintptr_t)es->finalizers[k] < hi);
    }
}

static double spec_parses(void)
{
    return fake_cluster_metric(fc, "holdfast_controller_spec_parses_total");
}

Test(lean_caches, a_spec_is_parsed_once_per_generation)
{
    cr_assert_eq(spec_parses(), N, "the lists parse each spec once");
    /* an echo of a status write (or a label edit): same generation, new resourceVersion */
    for (int k = 0; k < 5; k++) {
        fake_cluster_modify_es(fc, 4, 1, 300);
        fake_cluster_settle(fc);
    }
    cr_expect_eq(spec_parses(), N, "an event without a new generation parsed the spec again");
    /* a spec change: the API server moved the generation */
    fake_cluster_modify_es(fc, 4, 2, 60);
    fake_cluster_settle(fc);
    cr_expect_eq(spec_parses(), N + 1, "a new generation was not parsed");
    fake_cluster_modify_es(fc, 4, 2, 60);
    fake_cluster_settle(fc);
    cr_expect_eq(spec_parses(), N + 1);
}

/* The member names the table knows are shared, not allocated per object; the rest (a spec's
 * unknown fields) stay the object's own; copies and deletes work on both. */
Test(lean, known_member_names_are_shared)
{
    cJSON *o = parse("{\"metadata\":{\"name\":\"a\",\"namespace\":\"n\",\"uid\":\"u\","
                     "\"resourceVersion\":\"1\",\"generation\":1},\"spec\":{\"service\":\"a\","
                     "\"somethingNew\":{\"port\":1}},\"status\":{\"conditions\":[{\"type\":"
                     "\"Ready\",\"status\":\"True\"}]}}");
    lean_elastiservice(o);
    const cJSON *md = at(o, "metadata");
    cr_expect(md->type & cJSON_StringIsConst, "metadata's name was not shared");
    cr_expect(at(o, "metadata.name")->type & cJSON_StringIsConst);
    cr_expect(at(o, "status.conditions.0.type")->type & cJSON_StringIsConst);
    const cJSON *unknown = at(o, "spec.somethingNew");
    cr_expect_not_null(unknown);
    cr_expect_not(unknown->type & cJSON_StringIsConst, "an unknown name was shared");
    cr_expect(at(o, "spec.somethingNew.port")->type & cJSON_StringIsConst);
    cr_expect(cJSON_IsObject(md) && cJSON_IsString(at(o, "metadata.name")));
    /* a copy compares equal and lives on after the original is deleted */
    cJSON *copy = cJSON_Duplicate(at(o, "status.conditions"), 1);
    cJSON *again = parse("[{\"type\":\"Ready\",\"status\":\"True\"}]");
    cr_expect(cJSON_Compare(copy, again, 1));
    cJSON_Delete(o);
    cJSON_DeleteItemFromObjectCaseSensitive(cJSON_GetArrayItem(copy, 0), "type");
    cJSON_AddStringToObject(cJSON_GetArrayItem(copy, 0), "type", "Other");
    cr_expect_str_eq(
        cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(copy, 0), "type")->valuestring,
        "Other");
    char *text = cJSON_PrintUnformatted(copy);
    cr_expect_str_eq(text, "[{\"status\":\"True\",\"type\":\"Other\"}]");
    free(text);
    cJSON_Delete(copy);
    cJSON_Delete(again);
}

Test(lean, pod_keeps_what_early_readiness_reads)
{
    cJSON *o = parse(
        "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"w-1\",\"namespace\":"
        "\"n\",\"uid\":\"u\",\"resourceVersion\":\"9\",\"labels\":{\"app\":\"w\"},"
        "\"deletionTimestamp\":\"t\",\"managedFields\":[{}],\"ownerReferences\":[{}]},"
        "\"spec\":{\"nodeName\":\"n1\",\"volumes\":[{}],\"readinessGates\":[{}],"
        "\"containers\":[{\"name\":\"c\",\"image\":\"i\",\"env\":[{}],\"ports\":[{}],"
        "\"readinessProbe\":{},\"startupProbe\":{},\"livenessProbe\":{}}]},"
        "\"status\":{\"phase\":\"Running\",\"podIP\":\"10.0.0.1\",\"podIPs\":[{}],"
        "\"conditions\":[],\"containerStatuses\":[{\"name\":\"c\",\"ready\":false,"
        "\"started\":true,\"restartCount\":0,\"state\":{},\"image\":\"i\",\"imageID\":\"x\","
        "\"lastState\":{}}]}}");
    lean_pod(o);
    static const char *const kept[] = {"metadata.name",
                                       "metadata.namespace",
                                       "metadata.uid",
                                       "metadata.resourceVersion",
                                       "metadata.deletionTimestamp",
                                       "spec.readinessGates",
                                       "spec.containers.0.name",
                                       "spec.containers.0.ports",
                                       "spec.containers.0.readinessProbe",
                                       "spec.containers.0.startupProbe",
                                       "status.podIP",
                                       "status.conditions",
                                       "status.containerStatuses.0.name",
                                       "status.containerStatuses.0.ready",
                                       "status.containerStatuses.0.started",
                                       "status.containerStatuses.0.restartCount",
                                       "status.containerStatuses.0.state"};
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]); i++)
        has(o, kept[i]);
    static const char *const dropped[] = {"apiVersion",
                                          "metadata.labels",
                                          "metadata.managedFields",
                                          "metadata.ownerReferences",
                                          "spec.nodeName",
                                          "spec.volumes",
                                          "spec.containers.0.image",
                                          "spec.containers.0.env",
                                          "spec.containers.0.livenessProbe",
                                          "status.phase",
                                          "status.podIPs",
                                          "status.containerStatuses.0.image",
                                          "status.containerStatuses.0.lastState"};
    for (size_t i = 0; i < sizeof(dropped) / sizeof(dropped[0]); i++)
        gone(o, dropped[i]);
    cJSON_Delete(o);
}
