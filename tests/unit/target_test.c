/* target: scaleTargetRef kinds and aliases, Scale parsing, label selectors, and the diagnosis
 * rules (workload conditions, pod statuses, events) on JSON as the API server writes it. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "controller/target.h"

static int parse(const char *json, struct target_ref *ref, char *err, size_t errlen)
{
    cJSON *j = cJSON_Parse(json);
    int rc = target_ref_parse(j, ref, err, errlen);
    cJSON_Delete(j);
    return rc;
}

static void expect_ref(const char *api_version, const char *kind, enum target_kind want,
                       const char *group, const char *resource)
{
    char json[256], err[512] = "";
    snprintf(json, sizeof(json), "{\"apiVersion\":\"%s\",\"kind\":\"%s\",\"name\":\"web\"}",
             api_version, kind);
    struct target_ref ref;
    cr_assert_eq(parse(json, &ref, err, sizeof(err)), 0, "%s: %s", json, err);
    cr_assert_eq(ref.kind, want, "%s", json);
    cr_assert_str_eq(ref.res.group, group);
    cr_assert_str_eq(ref.res.resource, resource);
    cr_assert(ref.res.namespaced);
    cr_assert_str_eq(ref.name, "web");
}

Test(target, kubeelasti_kinds_and_aliases)
{
    expect_ref("apps/v1", "Deployment", TARGET_DEPLOYMENT, "apps", "deployments");
    expect_ref("apps/v1", "deployments", TARGET_DEPLOYMENT, "apps", "deployments");
    expect_ref("apps/v1", "StatefulSet", TARGET_STATEFULSET, "apps", "statefulsets");
    expect_ref("argoproj.io/v1alpha1", "Rollout", TARGET_ROLLOUT, "argoproj.io", "rollouts");
    expect_ref("argoproj.io/v1alpha1", "rollouts", TARGET_ROLLOUT, "argoproj.io", "rollouts");
    cr_assert_str_eq(target_kind_name(TARGET_STATEFULSET), "StatefulSet");
}

Test(target, kind_matched_as_kubeelasti_scales_it)
{
    /* KindToResource: lower-case, plural unless it ends in 's'. */
    expect_ref("apps/v1", "deployment", TARGET_DEPLOYMENT, "apps", "deployments");
    expect_ref("apps/v1", "DEPLOYMENT", TARGET_DEPLOYMENT, "apps", "deployments");
    expect_ref("apps/v1", "statefulsets", TARGET_STATEFULSET, "apps", "statefulsets");
    expect_ref("argoproj.io/v1alpha1", "Rollouts", TARGET_ROLLOUT, "argoproj.io", "rollouts");
}

static void expect_refused(const char *json, const char *field_prefix, const char *part)
{
    struct target_ref ref;
    char err[512] = "";
    cr_assert_eq(parse(json, &ref, err, sizeof(err)), -1, "%s accepted", json);
    cr_assert(strncmp(err, field_prefix, strlen(field_prefix)) == 0, "%s -> %s", json, err);
    cr_assert(strstr(err, part), "%s -> %s (wanted %s)", json, err, part);
}

Test(target, refusals_name_the_field)
{
    expect_refused("{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"name\":\"x\"}",
                   "spec.scaleTargetRef.kind: ", "\"Job\"");
    expect_refused("{\"apiVersion\":\"apps/v1\",\"kind\":\"DaemonSet\",\"name\":\"x\"}",
                   "spec.scaleTargetRef.kind: ", "DaemonSet");
    expect_refused("{\"apiVersion\":\"apps/v1\",\"kind\":\"Rollout\",\"name\":\"x\"}",
                   "spec.scaleTargetRef.apiVersion: ", "argoproj.io/v1alpha1");
    expect_refused(
        "{\"apiVersion\":\"argoproj.io/v1alpha1\",\"kind\":\"Deployment\",\"name\":\"x\"}",
        "spec.scaleTargetRef.apiVersion: ", "apps/v1");
    expect_refused("{\"apiVersion\":\"apps/v1beta1\",\"kind\":\"Deployment\",\"name\":\"x\"}",
                   "spec.scaleTargetRef.apiVersion: ", "apps/v1beta1");
    expect_refused("{\"kind\":\"Deployment\",\"name\":\"x\"}",
                   "spec.scaleTargetRef.apiVersion: ", "required");
    expect_refused("{\"apiVersion\":\"apps/v1\",\"name\":\"x\"}",
                   "spec.scaleTargetRef.kind: ", "required");
    expect_refused("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\"}",
                   "spec.scaleTargetRef.name: ", "required");
    expect_refused("{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"name\":\"a/b\"}",
                   "spec.scaleTargetRef.name: ", "a/b");
    expect_refused("[]", "spec.scaleTargetRef: ", "object");
}

Test(target, scale_parse_zero_values_omitted)
{
    cJSON *s =
        cJSON_Parse("{\"kind\":\"Scale\",\"metadata\":{\"name\":\"web\",\"resourceVersion\":"
                    "\"42\"},\"spec\":{},\"status\":{\"replicas\":0,\"selector\":\"app=web\"}}");
    struct target_scale sc;
    cr_assert_eq(target_scale_parse(s, &sc), 0);
    cr_assert_eq(sc.spec_replicas, 0);
    cr_assert_eq(sc.status_replicas, 0);
    cr_assert_str_eq(sc.selector, "app=web");
    cr_assert_str_eq(sc.resource_version, "42");
    cJSON_Delete(s);
    s = cJSON_Parse("{\"spec\":{\"replicas\":3},\"status\":{\"replicas\":2}}");
    cr_assert_eq(target_scale_parse(s, &sc), 0);
    cr_assert_eq(sc.spec_replicas, 3);
    cr_assert_eq(sc.status_replicas, 2);
    cr_assert_str_eq(sc.selector, "");
    cJSON_Delete(s);
    cr_assert_eq(target_scale_parse(NULL, &sc), -1);
}

static int selector(const char *json, char *buf, size_t len)
{
    cJSON *j = cJSON_Parse(json);
    int rc = target_label_selector(j, buf, len);
    cJSON_Delete(j);
    return rc;
}

Test(target, label_selector_from_match_labels_and_expressions)
{
    char buf[256];
    cr_assert_eq(
        selector("{\"matchLabels\":{\"app\":\"web\",\"tier\":\"front\"}}", buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "app=web,tier=front");
    cr_assert_eq(selector("{\"matchLabels\":{\"app\":\"web\"},\"matchExpressions\":["
                          "{\"key\":\"env\",\"operator\":\"In\",\"values\":[\"a\",\"b\"]},"
                          "{\"key\":\"x\",\"operator\":\"NotIn\",\"values\":[\"c\"]},"
                          "{\"key\":\"y\",\"operator\":\"Exists\"},"
                          "{\"key\":\"canary\",\"operator\":\"DoesNotExist\"}]}",
                          buf, sizeof(buf)),
                 0);
    cr_assert_str_eq(buf, "app=web,env in (a,b),x notin (c),y,!canary");
    cr_assert_eq(selector("{}", buf, sizeof(buf)), -1, "empty selects everything: refused");
    cr_assert_eq(
        selector("{\"matchExpressions\":[{\"key\":\"k\",\"operator\":\"Gt\"}]}", buf, sizeof(buf)),
        -1);
    cr_assert_eq(selector("{\"matchLabels\":{\"app\":\"a-very-long-value\"}}", buf, 10), -1,
                 "does not fit");
}

/* A Deployment as the real Deployment controller writes it. */
static cJSON *deployment(int replicas, const char *conditions)
{
    char buf[4096];
    snprintf(buf, sizeof(buf),
             "{\"kind\":\"Deployment\",\"metadata\":{\"name\":\"web\",\"uid\":\"u1\"},"
             "\"spec\":{\"replicas\":%d,\"selector\":{\"matchLabels\":{\"app\":\"web\"}}},"
             "\"status\":{\"conditions\":[%s]}}",
             replicas, conditions);
    cJSON *j = cJSON_Parse(buf);
    cr_assert_not_null(j, "%s", buf);
    return j;
}

#define QUOTA_MSG                                                                                  \
    "pods \\\"web-5d8-x\\\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=0, "    \
    "limited: pods=0"

static const char *progressing_ok =
    "{\"type\":\"Progressing\",\"status\":\"True\",\"reason\":\"ReplicaSetUpdated\"}";

Test(target, deployment_replica_failure_is_failed_create_with_quota_message)
{
    char conds[1024];
    snprintf(
        conds, sizeof(conds),
        "{\"type\":\"Available\",\"status\":\"False\",\"reason\":\"MinimumReplicasUnavailable\"},"
        "%s,{\"type\":\"ReplicaFailure\",\"status\":\"True\",\"reason\":\"FailedCreate\","
        "\"message\":\"" QUOTA_MSG "\"}",
        progressing_ok);
    cJSON *d = deployment(1, conds);
    cJSON *pods = cJSON_Parse("{\"items\":[]}");
    struct target_diagnosis diag;
    cr_assert(target_diagnose_objects(d, pods, NULL, &diag));
    cr_assert_str_eq(diag.reason, "FailedCreate");
    cr_assert_str_eq(diag.message, "FailedCreate: pods \"web-5d8-x\" is forbidden: exceeded quota: "
                                   "q, requested: pods=1, used: pods=0, limited: pods=0");
    cr_assert_str_eq(diag.object, "Deployment/web");
    cr_assert_eq(diag.pods, 0);
    cJSON_Delete(d);
    cJSON_Delete(pods);
}

Test(target, progress_deadline_exceeded_when_nothing_more_specific)
{
    cJSON *d =
        deployment(1, "{\"type\":\"Progressing\",\"status\":\"False\",\"reason\":"
                      "\"ProgressDeadlineExceeded\",\"message\":\"ReplicaSet \\\"web-5d8\\\" "
                      "has timed out progressing.\"}");
    cJSON *pods =
        cJSON_Parse("{\"items\":[{\"metadata\":{\"name\":\"web-5d8-a\"},\"status\":{"
                    "\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":"
                    "\"False\"}]}}]}");
    struct target_diagnosis diag;
    cr_assert(target_diagnose_objects(d, pods, NULL, &diag));
    cr_assert_str_eq(diag.reason, "ProgressDeadlineExceeded");
    cr_assert_str_eq(diag.message,
                     "ProgressDeadlineExceeded: ReplicaSet \"web-5d8\" has timed out progressing.");
    cr_assert_eq(diag.pods, 1);
    cr_assert_eq(diag.ready_pods, 0);
    cJSON_Delete(d);
    cJSON_Delete(pods);
}

static cJSON *pod_list(const char *items)
{
    char buf[8192];
    snprintf(buf, sizeof(buf), "{\"kind\":\"PodList\",\"items\":[%s]}", items);
    cJSON *j = cJSON_Parse(buf);
    cr_assert_not_null(j, "%s", buf);
    return j;
}

#define POD(name, created, status)                                                                 \
    "{\"metadata\":{\"name\":\"" name "\",\"creationTimestamp\":\"" created                        \
    "\"},\"status\":" status "}"

Test(target, image_pull_backoff_from_the_newest_pod)
{
    cJSON *d = deployment(1, progressing_ok);
    cJSON *pods = pod_list(POD(
        "web-old", "2025-01-01T00:00:00Z",
        "{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"main\",\"state\":{"
        "\"waiting\":{\"reason\":\"ErrImagePull\",\"message\":\"old\"}}}]}") "," POD("web-new",
                                                                                     "2025-01-"
                                                                                     "01T00:05:00Z",
                                                                                     "{\"phase\":"
                                                                                     "\"Pending\","
                                                                                     "\"containerSt"
                                                                                     "atuses\":[{"
                                                                                     "\"name\":"
                                                                                     "\"main\","
                                                                                     "\"state\":{"
                                                                                     "\"waiting\":{"
                                                                                     "\"reason\":"
                                                                                     "\"ImagePullBa"
                                                                                     "ckOff\","
                                                                                     "\"message\":"
                                                                                     "\"Back-off "
                                                                                     "pulling "
                                                                                     "image "
                                                                                     "\\\"nope:"
                                                                                     "1\\\"\"}}}]"
                                                                                     "}"));
    struct target_diagnosis diag;
    cr_assert(target_diagnose_objects(d, pods, NULL, &diag));
    cr_assert_str_eq(diag.reason, "ImagePullBackOff");
    cr_assert_str_eq(diag.message, "ImagePullBackOff: Back-off pulling image \"nope:1\" (pod "
                                   "web-new, container main)");
    cr_assert_str_eq(diag.object, "Pod/web-new");
    cr_assert_eq(diag.pods, 2);
    cJSON_Delete(d);
    cJSON_Delete(pods);
}

static void expect_pod(const char *status, const char *reason, const char *message)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "{\"metadata\":{\"name\":\"p\"},\"status\":%s}", status);
    cJSON *p = cJSON_Parse(buf);
    cr_assert_not_null(p, "%s", buf);
    struct target_diagnosis d = {0};
    bool found = target_pod_problem(p, &d);
    if (!reason) {
        cr_assert(!found, "%s -> %s", status, d.message);
    } else {
        cr_assert(found, "%s: no problem found", status);
        cr_assert_str_eq(d.reason, reason);
        cr_assert_str_eq(d.message, message);
        cr_assert_str_eq(d.object, "Pod/p");
    }
    cJSON_Delete(p);
}

Test(target, pod_problems)
{
    expect_pod("{\"phase\":\"Pending\",\"conditions\":[{\"type\":\"PodScheduled\",\"status\":"
               "\"False\",\"reason\":\"Unschedulable\",\"message\":\"0/3 nodes are available: 3 "
               "Insufficient cpu.\"}]}",
               "Unschedulable",
               "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu. (pod p)");
    expect_pod(
        "{\"containerStatuses\":[{\"name\":\"app\",\"restartCount\":4,\"state\":{\"waiting\":"
        "{\"reason\":\"CrashLoopBackOff\",\"message\":\"back-off 40s restarting failed "
        "container=app pod=p\"}},\"lastState\":{\"terminated\":{\"exitCode\":1,\"reason\":"
        "\"Error\"}}}]}",
        "CrashLoopBackOff",
        "CrashLoopBackOff: back-off 40s restarting failed container=app pod=p (pod p, "
        "container app, last exit code 1 Error)");
    expect_pod("{\"containerStatuses\":[{\"name\":\"app\",\"state\":{\"waiting\":{\"reason\":"
               "\"CreateContainerConfigError\",\"message\":\"secret \\\"db\\\" not found\"}}}]}",
               "CreateContainerConfigError",
               "CreateContainerConfigError: secret \"db\" not found (pod p, container app)");
    expect_pod("{\"initContainerStatuses\":[{\"name\":\"migrate\",\"state\":{\"waiting\":{"
               "\"reason\":\"ErrImagePull\"}}}],\"containerStatuses\":[{\"name\":\"app\",\"state\":"
               "{\"waiting\":{\"reason\":\"PodInitializing\"}}}]}",
               "ErrImagePull", "ErrImagePull: (pod p, init container migrate)");
    expect_pod("{\"phase\":\"Failed\",\"reason\":\"Evicted\",\"message\":\"The node was low on "
               "resource: memory.\"}",
               "Evicted", "Evicted: The node was low on resource: memory. (pod p)");
    /* On the way up: nothing wrong yet. */
    expect_pod("{\"phase\":\"Pending\",\"containerStatuses\":[{\"name\":\"app\",\"state\":{"
               "\"waiting\":{\"reason\":\"ContainerCreating\"}}}]}",
               NULL, NULL);
    expect_pod("{\"phase\":\"Running\",\"containerStatuses\":[{\"name\":\"app\",\"state\":{"
               "\"running\":{}}}]}",
               NULL, NULL);
    expect_pod("{\"phase\":\"Pending\",\"conditions\":[{\"type\":\"PodScheduled\",\"status\":"
               "\"False\",\"reason\":\"SchedulingGated\"}]}",
               NULL, NULL);
}

Test(target, terminating_pods_are_ignored)
{
    cJSON *d = deployment(1, progressing_ok);
    cJSON *pods =
        pod_list("{\"metadata\":{\"name\":\"gone\",\"deletionTimestamp\":\"2025-01-01T00:"
                 "00:00Z\"},\"status\":{\"containerStatuses\":[{\"name\":\"a\",\"state\":{"
                 "\"waiting\":{\"reason\":\"CrashLoopBackOff\"}}}]}}");
    struct target_diagnosis diag;
    cr_assert(!target_diagnose_objects(d, pods, NULL, &diag));
    cr_assert_str_eq(diag.reason, "");
    cr_assert_eq(diag.pods, 0);
    cJSON_Delete(d);
    cJSON_Delete(pods);
}

Test(target, nothing_wrong_yet)
{
    cJSON *d = deployment(1, progressing_ok);
    cJSON *pods = pod_list(POD("web-a", "2025-01-01T00:00:00Z",
                               "{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\","
                               "\"status\":\"True\"}]}"));
    struct target_diagnosis diag;
    cr_assert(!target_diagnose_objects(d, pods, NULL, &diag));
    cr_assert_str_eq(diag.reason, "");
    cr_assert_str_eq(diag.message, "");
    cr_assert_eq(diag.pods, 1);
    cr_assert_eq(diag.ready_pods, 1);
    cJSON_Delete(d);
    cJSON_Delete(pods);
}

Test(target, replica_failure_outranks_pod_problems)
{
    cJSON *d = deployment(2, "{\"type\":\"ReplicaFailure\",\"status\":\"True\",\"reason\":"
                             "\"FailedCreate\",\"message\":\"m\"}");
    cJSON *pods = pod_list(POD("web-a", "2025-01-01T00:00:00Z",
                               "{\"containerStatuses\":[{\"name\":\"a\",\"state\":{\"waiting\":{"
                               "\"reason\":\"ImagePullBackOff\"}}}]}"));
    struct target_diagnosis diag;
    cr_assert(target_diagnose_objects(d, pods, NULL, &diag));
    cr_assert_str_eq(diag.reason, "FailedCreate");
    cr_assert_str_eq(diag.message, "FailedCreate: m");
    cJSON_Delete(d);
    cJSON_Delete(pods);
}

Test(target, statefulset_failed_create_from_its_newest_warning_event)
{
    cJSON *sts = cJSON_Parse("{\"kind\":\"StatefulSet\",\"metadata\":{\"name\":\"db\"},\"spec\":{"
                             "\"replicas\":1},\"status\":{\"replicas\":0}}");
    cJSON *pods = pod_list("");
    cJSON *events = cJSON_Parse(
        "{\"items\":["
        "{\"type\":\"Warning\",\"reason\":\"FailedCreate\",\"message\":\"older\","
        "\"lastTimestamp\":\"2025-01-01T00:00:00Z\"},"
        "{\"type\":\"Warning\",\"reason\":\"FailedCreate\",\"message\":\"create Pod db-0 in "
        "StatefulSet db failed error: pods \\\"db-0\\\" is forbidden: exceeded quota: q\","
        "\"lastTimestamp\":\"2025-01-01T00:09:00Z\"},"
        "{\"type\":\"Normal\",\"reason\":\"SuccessfulCreate\",\"message\":\"x\","
        "\"lastTimestamp\":\"2025-01-01T00:10:00Z\"}]}");
    struct target_diagnosis diag;
    cr_assert(target_diagnose_objects(sts, pods, events, &diag));
    cr_assert_str_eq(diag.reason, "FailedCreate");
    cr_assert_str_eq(diag.message, "FailedCreate: create Pod db-0 in StatefulSet db failed error: "
                                   "pods \"db-0\" is forbidden: exceeded quota: q");
    cr_assert_str_eq(diag.object, "StatefulSet/db");
    /* Once the pods exist, an old event says nothing about now. */
    cJSON *one = pod_list(POD("db-0", "2025-01-01T00:11:00Z", "{\"phase\":\"Pending\"}"));
    cr_assert(!target_diagnose_objects(sts, one, events, &diag));
    cJSON_Delete(sts);
    cJSON_Delete(pods);
    cJSON_Delete(one);
    cJSON_Delete(events);
}

Test(target, rollout_invalid_spec)
{
    cJSON *ro = cJSON_Parse("{\"kind\":\"Rollout\",\"metadata\":{\"name\":\"canary\"},\"spec\":{"
                            "\"replicas\":1},\"status\":{\"conditions\":[{\"type\":\"InvalidSpec\","
                            "\"status\":\"True\",\"reason\":\"InvalidSpec\",\"message\":\"The "
                            "Rollout \\\"canary\\\" is invalid\"}]}}");
    struct target_diagnosis diag;
    cr_assert(target_diagnose_objects(ro, NULL, NULL, &diag));
    cr_assert_str_eq(diag.reason, "InvalidSpec");
    cr_assert_str_eq(diag.object, "Rollout/canary");
    cJSON_Delete(ro);
}

Test(target, long_messages_cut_at_a_utf8_boundary)
{
    char msg[3000];
    size_t at = 0;
    while (at + 3 < sizeof(msg) - 1) {
        memcpy(msg + at, "\xe2\x82\xac", 3); /* U+20AC, 3 bytes */
        at += 3;
    }
    msg[at] = '\0';
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "kind", "Deployment");
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "type", "ReplicaFailure");
    cJSON_AddStringToObject(c, "status", "True");
    cJSON_AddStringToObject(c, "reason", "FailedCreate");
    cJSON_AddStringToObject(c, "message", msg);
    cJSON *conds = cJSON_AddArrayToObject(cJSON_AddObjectToObject(d, "status"), "conditions");
    cJSON_AddItemToArray(conds, c);
    struct target_diagnosis diag;
    cr_assert(target_diagnose_objects(d, NULL, NULL, &diag));
    size_t n = strlen(diag.message);
    cr_assert(n > 900 && n < sizeof(diag.message));
    cr_assert_eq((n - strlen("FailedCreate: ")) % 3, 0, "only whole characters kept");
    cJSON_Delete(d);
}
