/*
 * lean: the informers' transforms. See lean.h.
 */
#include "controller/lean.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "controller/slices.h"

static cJSON *member(cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* Deletes every member of object o not named in keep (NULL-terminated). */
static void keep_only(cJSON *o, const char *const *keep)
{
    if (!cJSON_IsObject(o))
        return;
    cJSON *it = o->child;
    while (it) {
        cJSON *next = it->next;
        bool kept = false;
        for (size_t i = 0; keep[i] && !kept; i++)
            kept = it->string && strcmp(it->string, keep[i]) == 0;
        if (!kept)
            cJSON_Delete(cJSON_DetachItemViaPointer(o, it));
        it = next;
    }
}

/* keep_only on every object of array a. */
static void keep_only_each(cJSON *a, const char *const *keep)
{
    if (!cJSON_IsArray(a))
        return;
    cJSON *it;
    cJSON_ArrayForEach(it, a)
    {
        keep_only(it, keep);
    }
}

/*
 * The member names of the cached objects, shared: cJSON gives every member's name its own
 * allocation (about 32 bytes with malloc's overhead, for ~16 members per cached object), so a
 * name found here is freed and the member points to this table instead (cJSON_StringIsConst:
 * cJSON_Delete does not free it, cJSON_Duplicate shares it, and an item added to an object gets
 * its own copy). Names not listed (a spec's unknown fields) stay as they are.
 */
static const char *known[] = {"metadata",
                              "name",
                              "namespace",
                              "uid",
                              "resourceVersion",
                              "generation",
                              "creationTimestamp",
                              "deletionTimestamp",
                              "finalizers",
                              "labels",
                              "spec",
                              "status",
                              "type",
                              "clusterIP",
                              "ports",
                              "port",
                              "protocol",
                              "appProtocol",
                              "endpoints",
                              "addresses",
                              "conditions",
                              "ready",
                              "serving",
                              "terminating",
                              "nodeName",
                              "replicas",
                              "service",
                              "minTargetReplicas",
                              "cooldownPeriod",
                              "scaleTargetRef",
                              "apiVersion",
                              "kind",
                              "triggers",
                              "serverAddress",
                              "query",
                              "threshold",
                              "metadata",
                              "holdTimeoutSeconds",
                              "maxHeldConnections",
                              "enabledPeriod",
                              "schedule",
                              "duration",
                              "autoscaler",
                              "probeResponse",
                              "mode",
                              "observedGeneration",
                              "readyReplicas",
                              "terminatingReplicas",
                              "resolverPort",
                              "lastScaledUpTime",
                              "lastReconciledTime",
                              "reason",
                              "message",
                              "lastTransitionTime",
                              LABEL_SERVICE_NAME,
                              LABEL_MANAGED_BY};
static size_t n_known;

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted once, duplicates dropped (the control thread only, like the informers). */
static void known_sort(void)
{
    if (n_known)
        return;
    size_t n = sizeof(known) / sizeof(known[0]);
    qsort(known, n, sizeof(known[0]), cmp_name);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || strcmp(known[w - 1], known[i]) != 0)
            known[w++] = known[i];
    n_known = w;
}

/* Points the member names under o that the table holds to the table. */
static void share_names(cJSON *o)
{
    cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        /* only plain items: not one already const, nor one json.c marked (a NUL in its name) */
        if (it->string && (it->type & ~0xFF) == 0) {
            const char *key = it->string;
            const char **at = bsearch(&key, known, n_known, sizeof(known[0]), cmp_name);
            if (at) {
                cJSON_free(it->string);
                it->string = (char *)*at;
                it->type |= cJSON_StringIsConst;
            }
        }
        if (it->child)
            share_names(it);
    }
}

static void shared_names(cJSON *obj)
{
    known_sort();
    share_names(obj);
}

static const char *const md_identity[] = {"name", "namespace", "uid", "resourceVersion", NULL};

void lean_elastiservice(cJSON *obj)
{
    static const char *const top[] = {"metadata", "spec", "status", NULL};
    static const char *const md[] = {"name",
                                     "namespace",
                                     "uid",
                                     "resourceVersion",
                                     "generation",
                                     "creationTimestamp",
                                     "deletionTimestamp",
                                     "finalizers",
                                     NULL};
    keep_only(obj, top);
    keep_only(member(obj, "metadata"), md);
    shared_names(obj);
}

void lean_service(cJSON *obj)
{
    static const char *const top[] = {"metadata", "spec", NULL};
    static const char *const spec[] = {"type", "clusterIP", "ports", NULL};
    static const char *const port[] = {"name",        "port",       "protocol",
                                       "appProtocol", "targetPort", NULL};
    keep_only(obj, top);
    keep_only(member(obj, "metadata"), md_identity);
    cJSON *s = member(obj, "spec");
    keep_only(s, spec);
    keep_only_each(member(s, "ports"), port);
    shared_names(obj);
}

void lean_endpointslice(cJSON *obj)
{
    static const char *const top[] = {"metadata", "endpoints", "ports", NULL};
    static const char *const md[] = {"name", "namespace", "uid", "resourceVersion", "labels", NULL};
    static const char *const labels[] = {LABEL_SERVICE_NAME, LABEL_MANAGED_BY, NULL};
    static const char *const endpoint[] = {"addresses", "conditions", "nodeName", NULL};
    keep_only(obj, top);
    cJSON *m = member(obj, "metadata");
    keep_only(m, md);
    keep_only(member(m, "labels"), labels);
    if (!slices_is_resolver_slice(obj))
        keep_only_each(member(obj, "endpoints"), endpoint);
    shared_names(obj);
}

void lean_workload(cJSON *obj)
{
    static const char *const top[] = {"metadata", "spec", "status", NULL};
    static const char *const md[] = {"name",       "namespace", "uid", "resourceVersion",
                                     "generation", NULL};
    /* selector: leaving_check lists the workload's pods by it */
    static const char *const spec[] = {"replicas", "selector", NULL};
    static const char *const status[] = {"observedGeneration", "readyReplicas",
                                         "terminatingReplicas", NULL};
    keep_only(obj, top);
    keep_only(member(obj, "metadata"), md);
    keep_only(member(obj, "spec"), spec);
    keep_only(member(obj, "status"), status);
    shared_names(obj);
}

void lean_pod(cJSON *obj)
{
    static const char *const top[] = {"metadata", "spec", "status", NULL};
    static const char *const md[] = {
        "name", "namespace", "uid", "resourceVersion", "deletionTimestamp", NULL};
    static const char *const spec[] = {"containers", "readinessGates", NULL};
    static const char *const container[] = {"name", "ports", "readinessProbe", "startupProbe",
                                            NULL};
    static const char *const status[] = {"podIP", "conditions", "containerStatuses", NULL};
    static const char *const cstatus[] = {"name",         "ready", "started",
                                          "restartCount", "state", NULL};
    keep_only(obj, top);
    keep_only(member(obj, "metadata"), md);
    cJSON *s = member(obj, "spec");
    keep_only(s, spec);
    keep_only_each(member(s, "containers"), container);
    cJSON *st = member(obj, "status");
    keep_only(st, status);
    keep_only_each(member(st, "containerStatuses"), cstatus);
    shared_names(obj);
}
