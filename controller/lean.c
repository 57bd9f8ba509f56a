/*
 * lean: the informers' transforms. See lean.h.
 */
#include "controller/lean.h"

#include <stdbool.h>
#include <stddef.h>
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
}

void lean_service(cJSON *obj)
{
    static const char *const top[] = {"metadata", "spec", NULL};
    static const char *const spec[] = {"type", "clusterIP", "ports", NULL};
    static const char *const port[] = {"name", "port", "protocol", "appProtocol", NULL};
    keep_only(obj, top);
    keep_only(member(obj, "metadata"), md_identity);
    cJSON *s = member(obj, "spec");
    keep_only(s, spec);
    keep_only_each(member(s, "ports"), port);
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
}

void lean_workload(cJSON *obj)
{
    static const char *const top[] = {"metadata", "spec", NULL};
    static const char *const spec[] = {"replicas", NULL};
    keep_only(obj, top);
    keep_only(member(obj, "metadata"), md_identity);
    keep_only(member(obj, "spec"), spec);
}
