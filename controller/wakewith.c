/*
 * wakewith: the workloads that wake with the target (spec.wakeWith), its worker or cache
 * Deployment for instance. They follow the target's replicas between zero and their own count:
 *
 *   - wakewith_sleep (leader, after the target's own scale to zero is sent): each member's /scale
 *     is read; one above zero has its count remembered in status.wakeWithReplicas ("Kind/name":
 *     count) and is then scaled to zero. The map is kept in memory too (wakewith_status reads
 *     it back from every status event), so the leader that scaled a member down knows its count
 *     even when the status write is still on its way.
 *   - wakewith_wake (any replica: with a wake that finds the target at zero, at the switch to
 *     serve, and at deletion to restore them): each member at zero is scaled to its remembered
 *     count (1 when none is remembered: holdfast did not scale it down), with target_wake's
 *     conditional patch, so it never lowers a count someone raised. Nothing waits for it: the
 *     target's wake and the forwarding of held requests go on whatever the members do.
 *
 * A member that does not exist, or cannot be scaled, is reported and skipped: a Warning Event
 * (WakeWithFailed) and the condition WakeWith=False name it (status written only when the
 * condition changes), and a log line. The condition goes back to True once every member was
 * scaled (or found scaled) again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/es.h"

/* "Deployment/worker": the key of a member in status.wakeWithReplicas. */
static void member_key(const struct target_ref *m, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", target_kind_name(m->kind), m->name);
}

/* The member a callback was for, if e still exists and its spec did not change since; frees
 * the reference. */
static struct es *member_take(struct es_ref *ref, const struct target_ref **m)
{
    int i = ref->replicas;
    int64_t gen = ref->generation;
    struct es *e = es_ref_take(ref);
    if (!e || e->spec_gen != gen || i < 0 || (size_t)i >= e->spec.n_wake_with)
        return NULL;
    *m = &e->spec.wake_with[i];
    return e;
}

static struct es_ref *member_ref(struct es *e, size_t i)
{
    struct es_ref *ref = es_ref_new(e);
    if (ref) {
        ref->replicas = (int)i;
        ref->generation = e->spec_gen;
    }
    return ref;
}

/* Records how member i did: a failure names it in the condition and a Warning Event. */
static void member_outcome(struct es *e, const struct target_ref *m, const char *what,
                           const struct kube_error *err)
{
    unsigned bit = 1u << (m - e->spec.wake_with);
    if (!err) {
        e->wakewith_failed &= ~bit;
        if (!e->wakewith_failed && es_cond_set(e, "WakeWith", true, "MembersScaled",
                                               "every spec.wakeWith workload follows the target"))
            es_status_sync(e, false);
        return;
    }
    e->wakewith_failed |= bit;
    char msg[768];
    snprintf(msg, sizeof(msg), "%s spec.wakeWith member %s %.250s failed: %s: %.300s", what,
             target_kind_name(m->kind), m->name, err->reason, err->message);
    log_warn("wakeWith: a member could not be scaled; the target's wake goes on",
             "elastiservice=%s member=%s error=%s message=%s", e->key, m->name, err->reason,
             err->message);
    if (es_cond_set(e, "WakeWith", false,
                    err->code == KUBE_ERR_NOT_FOUND ? "MemberNotFound" : "MemberScaleFailed",
                    msg)) {
        es_event(e, true, "WakeWithFailed", msg);
        es_status_sync(e, false);
    }
}

/* ---- the wake ---- */

static void on_member_woken(const struct target_result *res, const struct kube_error *err,
                            void *arg)
{
    const struct target_ref *m = NULL;
    struct es *e = member_take(arg, &m);
    if (!e)
        return;
    member_outcome(e, m, "scaling up", err);
    if (err || !res->patched)
        return;
    e->c->wakewith_scaled++;
    char msg[512];
    snprintf(msg, sizeof(msg), "scaled %s %.250s (spec.wakeWith) from 0 to %d with the target",
             target_kind_name(m->kind), m->name, res->scale.spec_replicas);
    es_event(e, false, "WakeWithScaledUp", msg);
}

/* The count member m had when holdfast scaled it to zero, or 1. */
static int member_count(const struct es *e, const struct target_ref *m)
{
    char key[320];
    member_key(m, key, sizeof(key));
    const cJSON *n = json_get(e->wakewith_replicas, key);
    return cJSON_IsNumber(n) && n->valuedouble >= 1 && n->valuedouble <= SPEC_MAX_WAKE_REPLICAS
               ? (int)n->valuedouble
               : 1;
}

void wakewith_wake(struct es *e)
{
    if (e->spec_error)
        return;
    for (size_t i = 0; i < e->spec.n_wake_with; i++) {
        const struct target_ref *m = &e->spec.wake_with[i];
        struct es_ref *ref = member_ref(e, i);
        if (ref &&
            !target_wake(e->c->kube_wake, m, e->ns, member_count(e, m), on_member_woken, ref))
            es_ref_take(ref);
    }
}

/* ---- the scale to zero ---- */

static void on_member_slept(const struct target_result *res, const struct kube_error *err,
                            void *arg)
{
    const struct target_ref *m = NULL;
    struct es *e = member_take(arg, &m);
    if (e)
        member_outcome(e, m, "scaling to zero", err);
}

static void on_member_read(const struct target_result *res, const struct kube_error *err, void *arg)
{
    const struct target_ref *m = NULL;
    struct es_ref *ref = arg;
    int i = ref->replicas;
    struct es *e = member_take(ref, &m);
    if (!e)
        return;
    if (err) {
        member_outcome(e, m, "reading", err);
        return;
    }
    int n = res->scale.spec_replicas;
    if (n == 0)
        return; /* at zero already: the count remembered before stays */
    char key[320];
    member_key(m, key, sizeof(key));
    if (!e->wakewith_replicas)
        e->wakewith_replicas = cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(e->wakewith_replicas, key);
    cJSON_AddNumberToObject(e->wakewith_replicas, key, n);
    /* Remembered where every replica (and a restart) reads it, then scaled down: the status
     * sync writes the whole map (status.wakeWithReplicas) when it changed. */
    es_status_sync(e, false);
    log_info("wakeWith: scaling a member to zero with the target",
             "elastiservice=%s member=%s replicas=%d", e->key, m->name, n);
    struct es_ref *next = member_ref(e, (size_t)i);
    if (next && !target_scale_to(e->c->kube, m, e->ns, 0, on_member_slept, next))
        es_ref_take(next);
}

void wakewith_sleep(struct es *e)
{
    if (e->spec_error)
        return;
    for (size_t i = 0; i < e->spec.n_wake_with; i++) {
        struct es_ref *ref = member_ref(e, i);
        if (ref && !target_get_scale(e->c->kube, &e->spec.wake_with[i], e->ns, on_member_read, ref))
            es_ref_take(ref);
    }
}

void wakewith_status(struct es *e, const cJSON *status, bool ours_newer)
{
    const cJSON *r = json_get(status, "wakeWithReplicas");
    if (ours_newer || !cJSON_IsObject(r))
        return; /* an older echo does not undo a count this replica just remembered */
    cJSON_Delete(e->wakewith_replicas);
    e->wakewith_replicas = cJSON_Duplicate(r, true);
}
