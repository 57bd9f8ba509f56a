/*
 * finalize: holdfast's finalizer on an ElastiService. The leader adds it (finalize_ensure) so
 * that a deleted ElastiService is restored first: its target (and its spec.wakeWith members)
 * scaled back up when at zero, KEDA
 * resumed, the resolver slices deleted, and only then the finalizer removed
 * (finalize_deleted). A patch in flight is not sent again until the informer shows it or it
 * fails.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/es.h"

/* A removal that finds the ElastiService gone is done: the finalizer went with it. Otherwise
 * the next reconcile restores and removes again. */
static void on_finalizer_removed(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct es *e = es_ref_take(arg);
    if (err && err->code == KUBE_ERR_NOT_FOUND)
        return;
    if (err) {
        log_warn("kubernetes write failed; the next reconcile retries",
                 "what=%s error=%s message=%s", "finalizer removal", err->reason, err->message);
        if (e)
            e->finalize_sent = false;
    }
}

static bool remove_finalizer(struct es *e, const struct es_cached *obj)
{
    cJSON *patch = cJSON_CreateObject();
    cJSON *fins = cJSON_AddArrayToObject(cJSON_AddObjectToObject(patch, "metadata"), "finalizers");
    for (size_t i = 0; i < obj->n_finalizers; i++) {
        if (strcmp(obj->finalizers[i], FINALIZER) != 0)
            cJSON_AddItemToArray(fins, cJSON_CreateString(obj->finalizers[i]));
    }
    struct es_ref *ref = es_ref_new(e);
    bool sent = ref && kube_patch(e->c->kube, &RES_ES, e->ns, e->name, NULL, KUBE_PATCH_MERGE,
                                  patch, on_finalizer_removed, ref);
    if (ref && !sent)
        es_ref_take(ref);
    cJSON_Delete(patch);
    return sent;
}

/* Being deleted (leader): restore, then remove the finalizer. */
void finalize_deleted(struct es *e, const struct es_cached *obj)
{
    switch_cancel(e); /* a scale to zero under way must not outlive the ElastiService */
    if (!e->c->leader || !e->has_finalizer || e->finalize_sent)
        return;
    /* Restore: the target back to minTargetReplicas when it is at 0 (target_wake is a no-op
     * otherwise), KEDA resumed, the Service's traffic back to its pods. */
    if (e->spec.target_ok) {
        wake_target(e);
        wakewith_wake(e); /* the spec.wakeWith members back to their counts, when at zero */
    }
    es_keda_set(e, false);
    resolver_slices_delete(e);
    e->finalize_sent = remove_finalizer(e, obj);
    log_info("elastiservice deleted: target and Service restored", "elastiservice=%s", e->key);
}

static void on_finalizer_done(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct es *e = es_ref_take(arg);
    if (err) {
        log_warn("adding the finalizer failed; the next reconcile retries",
                 "elastiservice=%s error=%s message=%s", e ? e->key : "?", err->reason,
                 err->message);
        if (e)
            e->finalizer_sent = false;
    }
}

/* Adds the finalizer when obj lacks it (leader). */
void finalize_ensure(struct es *e, const struct es_cached *obj)
{
    if (e->finalizer_sent)
        return;
    cJSON *patch = cJSON_CreateObject();
    cJSON *fins = cJSON_AddArrayToObject(cJSON_AddObjectToObject(patch, "metadata"), "finalizers");
    for (size_t i = 0; i < obj->n_finalizers; i++)
        cJSON_AddItemToArray(fins, cJSON_CreateString(obj->finalizers[i]));
    cJSON_AddItemToArray(fins, cJSON_CreateString(FINALIZER));
    struct es_ref *ref = es_ref_new(e);
    if (ref && kube_patch(e->c->kube, &RES_ES, e->ns, e->name, NULL, KUBE_PATCH_MERGE, patch,
                          on_finalizer_done, ref))
        e->finalizer_sent = true;
    else if (ref)
        es_ref_take(ref);
    cJSON_Delete(patch);
}
