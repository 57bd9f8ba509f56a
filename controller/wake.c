/*
 * wake: the wake consumer. The data plane queues a wake when it holds a connection for a
 * service at zero (resolver/dataplane.h); wake_on_queue takes them and wake_target patches the
 * target's /scale to the wake's size (its own API client, so wakes never queue behind polls),
 * resumes KEDA and records lastScaledUpTime. The size is minTargetReplicas, or with
 * spec.podCapacity ceil(held / podCapacity) within minTargetReplicas..maxWakeReplicas
 * (decide_wake_replicas); while the woken pods start (proxy mode), each further wake asks
 * again and raises the count when the held connections grew (never lowers it; once serving,
 * HPA or KEDA own it). The spec.wakeWith workloads are woken alongside (wakewith.c). A failed scale
 * call is retried by wake_on_retry; a woken target that has no ready pod yet is diagnosed
 * (wake_diagnose: workload conditions, pod statuses, Events), for the clients' 504s, a condition
 * and an Event.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/es.h"

static void on_raised(const struct target_result *res, const struct kube_error *err, void *arg);

/* The most a wake asks for: spec.maxWakeReplicas, and the KEDA ScaledObject's maxReplicaCount
 * when this replica knows it (0: no bound). */
static int wake_max(const struct es *e)
{
    int max = e->spec.max_wake_replicas, keda = e->keda_max_replicas;
    return keda > 0 && (max == 0 || keda < max) ? keda : max;
}

/*
 * After a wake or raise answered with the target at sc: raise it when the connections held now
 * ask for more (proxy mode, nothing in flight). Without this, held connections that arrived
 * while a wake was in flight folded into one more wake, which found the target no longer at
 * zero (a cache a moment behind) and did nothing; no further connection came to ask again.
 */
static void raise_if_grown(struct es *e, const struct target_scale *sc)
{
    if (e->wake_inflight || e->mode != ES_MODE_PROXY || e->deleting || !e->spec.pod_capacity ||
        sc->spec_replicas <= 0)
        return;
    long held = e->svc ? svc_state_held(e->svc) : 0;
    int want = decide_wake_replicas(held, e->spec.pod_capacity, e->spec.min_replicas, wake_max(e));
    if (want <= sc->spec_replicas)
        return;
    struct es_ref *ref = es_ref_new(e);
    if (!ref)
        return;
    e->wake_held = held;
    e->wake_want = want;
    if (target_raise_at(e->c->kube_wake, &e->spec.target, e->ns, want, sc->spec_replicas,
                        sc->resource_version, on_raised, ref))
        e->wake_inflight = true;
    else
        es_ref_take(ref);
}

static void wake_done(struct es *e, const struct target_result *res, const struct kube_error *err);

static void on_wake_done(const struct target_result *res, const struct kube_error *err, void *arg)
{
    struct controller *c = ((struct es_ref *)arg)->c;
    struct es *e = es_ref_take(arg);
    if (!e) {
        /* its ElastiService went meanwhile (a restore at deletion): the scale-up happened */
        if (!err && res && res->patched)
            c->wakes_sent++;
        return;
    }
    wake_done(e, res, err);
    if (!err)
        raise_if_grown(e, &res->scale);
}

static void wake_done(struct es *e, const struct target_result *res, const struct kube_error *err)
{
    e->wake_inflight = false;
    if (e->wake_again) {
        /* Asked for while this one was in flight: the target may have been read before it was
         * scaled down again, so one more wake now. */
        e->wake_again = false;
        wake_target(e);
    }
    if (err) {
        /* Say why where the operator and the held clients look: a condition, a Warning Event
         * (both only when the reason changes) and the 504s' reason. An API that cannot be
         * reached cannot take the condition either; the status_dirty retry writes it later. */
        char why[1024];
        snprintf(why, sizeof(why), "scaling %s %.250s up failed: %s: %s",
                 target_kind_name(e->spec.target.kind), e->spec.target.name, err->reason,
                 err->message);
        if (es_cond_set(e, "ScaleUpFailed", true,
                        err->code == KUBE_ERR_FORBIDDEN ? "Forbidden" : "ScaleCallFailed", why)) {
            es_event(e, true, "ScaleUpFailed", why);
            es_status_sync(e, false);
        }
        free(e->not_ready_reason);
        e->not_ready_reason = strdup(why);
        e->scale_call_failed = true;
        routes_changed(e);
        e->wake_failed = true;
        struct timeval tv = {WAKE_REPEAT_MS / 1000, (WAKE_REPEAT_MS % 1000) * 1000};
        event_add(e->c->wake_retry_ev, &tv);
        log_warn("wake: scaling the target failed", "elastiservice=%s error=%s message=%s", e->key,
                 err->reason, err->message);
        return;
    }
    e->awaiting_wake = false; /* the target is scaled up: ready endpoints now mean serve */
    e->wake_failed = false;
    if (e->scale_call_failed) {
        e->scale_call_failed = false;
        free(e->not_ready_reason);
        e->not_ready_reason = NULL;
        if (es_cond_set(e, "ScaleUpFailed", false, "ScaleCallSucceeded", ""))
            es_status_sync(e, false);
        routes_changed(e);
    }
    es_keda_set(e, false);
    if (!res->patched)
        return; /* already scaled up (by another replica, by hand, or a wake before) */
    if (!e->wakewith_sent && !e->deleting)
        wakewith_wake(e);
    e->c->wakes_sent++;
    /* The first held request as the wake remembered it when sent: the data plane forgets it
     * when a held connection's first byte reaches a backend, which can come before this answer
     * (that read 0 here and logged wake_to_scale_ms=-1). */
    uint64_t held_since =
        e->cold_open && e->cold_held_ns ? e->cold_held_ns : svc_state_wake_started_ns(e->svc);
    coldstart_wake_answered(e);
    double ms = held_since ? (double)(clock_mono_ns() - held_since) / 1e6 : -1.0;
    if (held_since)
        svc_state_observe_wake_to_scale(e->svc, clock_mono_ns() - held_since);
    log_info("woken: target scaled up", "elastiservice=%s wake_to_scale_ms=%f", e->key, ms);
    char timing[160] = "";
    int64_t t0 = e->cold.at_ms[COLD_HELD], sent = e->cold.at_ms[COLD_SCALE_SENT],
            answered = e->cold.at_ms[COLD_SCALE_ANSWERED];
    if (t0 >= 0 && sent >= t0 && answered >= sent)
        snprintf(timing, sizeof(timing),
                 "; the scale call went %.1f s after the first held request and was answered "
                 "%.1f s later",
                 (double)(sent - t0) / 1000.0, (double)(answered - sent) / 1000.0);
    char msg[640];
    if (e->spec.pod_capacity)
        snprintf(msg, sizeof(msg),
                 "scaled %s %.250s from 0 to %d: %ld held connections asked for %d replicas "
                 "(podCapacity %d)%s",
                 target_kind_name(e->spec.target.kind), e->spec.target.name,
                 res->scale.spec_replicas, e->wake_held, e->wake_want, e->spec.pod_capacity,
                 timing);
    else
        snprintf(msg, sizeof(msg), "scaled %s %.250s from 0 to %d: a request arrived%s",
                 target_kind_name(e->spec.target.kind), e->spec.target.name,
                 res->scale.spec_replicas, timing);
    es_event(e, false, "ScaledUp", msg);
    /* The leader writes lastScaledUpTime with the serve switch's status write, which follows
     * as soon as the pod is ready (or with any other status write before it, or the next poll's
     * at the latest): one write instead of two. Only the cooldown of a service in serve mode
     * reads it. A replica that does not lead writes it at once. */
    e->scaled_up_unwritten = clock_wall_s();
    e->last_scaled_up = e->scaled_up_unwritten;
    if (e->c->leader && e->mode == ES_MODE_PROXY && !e->deleting)
        return;
    es_status_sync(e, true);
}

/* A raise answered: the target was already woken, so only the count is news. */
static void on_raised(const struct target_result *res, const struct kube_error *err, void *arg)
{
    struct es *e = es_ref_take(arg);
    if (!e)
        return;
    e->wake_inflight = false;
    if (err) {
        /* Not a failed wake: the pods asked for before start anyway. The next held connection
         * (or the retry below, while connections are held) asks again. */
        log_warn("wake: raising the woken target failed", "elastiservice=%s error=%s message=%s",
                 e->key, err->reason, err->message);
        e->wake_failed = true;
        struct timeval tv = {WAKE_REPEAT_MS / 1000, (WAKE_REPEAT_MS % 1000) * 1000};
        event_add(e->c->wake_retry_ev, &tv);
    } else if (res->patched) {
        e->c->wake_raises++;
        char msg[512];
        snprintf(msg, sizeof(msg),
                 "scaled %s %.250s from %d to %d while its pods start: %ld held connections "
                 "asked for %d replicas (podCapacity %d)",
                 target_kind_name(e->spec.target.kind), e->spec.target.name, res->from,
                 res->scale.spec_replicas, e->wake_held, e->wake_want, e->spec.pod_capacity);
        log_info("woken: target raised", "elastiservice=%s from=%d replicas=%d held=%ld", e->key,
                 res->from, res->scale.spec_replicas, e->wake_held);
        es_event(e, false, "ScaledUp", msg);
    }
    if (e->wake_again) {
        e->wake_again = false;
        wake_target(e);
    }
    if (!err)
        raise_if_grown(e, &res->scale);
}

/*
 * Any replica: scale the target from 0 to the wake's size (target_wake reads the scale and
 * patches with its resourceVersion, so replicas waking at once scale once, and a wake never
 * lowers a count someone raised). One wake per service is in flight at a time; wakes asked for
 * meanwhile fold into one more after it, never into none: the data plane asks once per burst
 * of held requests, so a wake dropped here would leave them held until their timeout.
 *
 * A target already woken (proxy mode, scaled up, no longer awaiting the wake) is raised instead
 * when the held connections now ask for more than its spec.replicas (target_raise_at: only
 * upwards, on the version read). In serve mode nothing is sent: HPA or KEDA own the count.
 */
void wake_target(struct es *e)
{
    if (!e->spec.target_ok || e->spec_error)
        return;
    if (e->wake_inflight) {
        e->wake_again = true;
        return;
    }
    long held = e->svc ? svc_state_held(e->svc) : 0;
    int want = decide_wake_replicas(held, e->spec.pod_capacity, e->spec.min_replicas, wake_max(e));
    /* The workload watch's cache shows the zero: patch at once, on the condition that the
     * workload is still the version cached (a 409 reads and decides again). */
    const cJSON *wl = es_cached_workload(e);
    const cJSON *r = json_get(json_get(wl, "spec"), "replicas");
    const char *wl_rv = json_str(json_get(wl, "metadata"), "resourceVersion");
    int cached = cJSON_IsNumber(r) ? r->valueint : -1;
    struct es_ref *ref = es_ref_new(e);
    if (!ref)
        return;
    e->wake_held = held;
    e->wake_want = want;
    if (cached > 0 && cached < want && e->mode == ES_MODE_PROXY && !e->awaiting_wake &&
        !e->deleting) {
        if (target_raise_at(e->c->kube_wake, &e->spec.target, e->ns, want, cached, wl_rv, on_raised,
                            ref))
            e->wake_inflight = true;
        else
            es_ref_take(ref);
        log_info("wake: raising the woken target", "elastiservice=%s target=%s from=%d replicas=%d",
                 e->key, e->spec.target.name, cached, want);
        return;
    }
    /* Otherwise a wake: from zero only (a cache that shows more may be stale: it reads). */
    if (target_wake_at(e->c->kube_wake, &e->spec.target, e->ns, want, cached == 0 ? wl_rv : NULL,
                       on_wake_done, ref)) {
        e->wake_inflight = true;
        coldstart_wake_sent(e);
    } else
        es_ref_take(ref);
    /* Seen at zero (or not seen): its group wakes with it, in parallel, never awaited. A wake
     * that finds the zero only when it reads sends them when it patched (on_wake_done). A
     * deletion restores them itself (finalize_deleted). */
    e->wakewith_sent = cached <= 0 && !e->deleting;
    if (e->wakewith_sent)
        wakewith_wake(e);
    log_info("wake: scaling the target up from zero", "elastiservice=%s target=%s replicas=%d",
             e->key, e->spec.target.name, want);
}

void wake_on_queue(evutil_socket_t fd, short what, void *arg)
{
    struct controller *c = arg;
    struct wake_msg *m = dataplane_wakes_take(c->dp);
    while (m) {
        struct wake_msg *next = m->next;
        struct es *e = es_find(c, svc_state_ns(m->svc), svc_state_name(m->svc));
        if (e && m->kind == WAKE_NEEDED) {
            wake_target(e);
            early_begin(e);
        } else if (e)
            routes_changed(e); /* a backend refused: refresh the endpoints from the caches */
        wake_msg_free(m);
        m = next;
    }
}

/*
 * A wake whose scale call failed (API unreachable, 503, ...) is retried every WAKE_REPEAT_MS
 * while the service still holds connections: held clients send nothing more, so no new wake
 * would come. (Bug found by test_controller.py's API-outage test: the wake was lost and the
 * held request waited for its hold timeout although the API was back.)
 */
void wake_on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct controller *c = arg;
    for (struct es *e = c->list; e; e = e->next) {
        if (!e->wake_failed)
            continue;
        e->wake_failed = false; /* set again (and the timer re-armed) if this one fails too */
        if (e->svc && svc_state_held(e->svc) > 0)
            wake_target(e);
    }
}

/* A woken target without a ready pod: find out why, for the 504s, a condition and an Event. */
/*
 * Two diagnoses say the same when they differ only inside double quotes: the API server names
 * the pod a controller tried to create (`pods "web-6d4f9c-x2b7q" is forbidden: exceeded
 * quota: ...`), a new generated name every attempt. Without this, every polling interval
 * would write the status and record another Event for one unchanged cause.
 */
static bool same_diagnosis(const char *a, const char *b)
{
    while (*a && *b) {
        if (*a == '"' && *b == '"') {
            const char *ea = strchr(a + 1, '"'), *eb = strchr(b + 1, '"');
            if (!ea || !eb)
                return strcmp(a, b) == 0;
            a = ea + 1;
            b = eb + 1;
            continue;
        }
        if (*a++ != *b++)
            return false;
    }
    return *a == *b;
}

static void on_diagnosed(const struct target_result *res, const struct kube_error *err, void *arg)
{
    struct es *e = es_ref_take(arg);
    if (!e || err)
        return;
    const struct target_diagnosis *d = &res->diag;
    bool changed = (d->reason[0] != '\0') != (e->not_ready_reason != NULL) ||
                   (e->not_ready_reason && !same_diagnosis(e->not_ready_reason, d->message));
    if (!changed)
        return;
    free(e->not_ready_reason);
    e->not_ready_reason = d->reason[0] ? strdup(d->message) : NULL;
    if (d->reason[0]) {
        es_cond_set(e, "ScaleUpFailed", true, d->reason, d->message);
        es_event(e, true, d->reason, d->message);
    } else {
        es_cond_set(e, "ScaleUpFailed", false, "NoProblemFound", "");
    }
    es_status_sync(e, false);
    routes_changed(e);
}

void wake_diagnose(struct es *e)
{
    struct es_ref *ref = es_ref_new(e);
    if (ref && !target_diagnose(e->c->kube, &e->spec.target, e->ns, on_diagnosed, ref))
        es_ref_take(ref);
}
