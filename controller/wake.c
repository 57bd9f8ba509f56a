/*
 * wake: the wake consumer. The data plane queues a wake when it holds a connection for a
 * service at zero (resolver/dataplane.h); wake_on_queue takes them and wake_target patches the
 * target's /scale to minTargetReplicas (its own API client, so wakes never queue behind polls),
 * resumes KEDA and records lastScaledUpTime. A failed scale call is retried by wake_on_retry; a
 * woken target that has no ready pod yet is diagnosed (wake_diagnose: workload conditions, pod
 * statuses, Events), for the clients' 504s, a condition and an Event.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/es.h"

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
    e->c->wakes_sent++;
    uint64_t held_since = svc_state_wake_started_ns(e->svc);
    double ms = held_since ? (double)(clock_mono_ns() - held_since) / 1e6 : -1.0;
    if (held_since)
        svc_state_observe_wake_to_scale(e->svc, clock_mono_ns() - held_since);
    log_info("woken: target scaled up", "elastiservice=%s wake_to_scale_ms=%f", e->key, ms);
    char msg[512];
    snprintf(msg, sizeof(msg), "scaled %s %s from 0 to %d: a request arrived",
             target_kind_name(e->spec.target.kind), e->spec.target.name, e->spec.min_replicas);
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

/*
 * Any replica: scale the target from 0 to minTargetReplicas (target_wake reads the scale and
 * patches with its resourceVersion, so replicas waking at once scale once, and a wake never
 * lowers a count someone raised). One wake per service is in flight at a time; wakes asked for
 * meanwhile fold into one more after it, never into none: the data plane asks once per burst
 * of held requests, so a wake dropped here would leave them held until their timeout.
 */
void wake_target(struct es *e)
{
    if (!e->spec.target_ok || e->spec_error)
        return;
    if (e->wake_inflight) {
        e->wake_again = true;
        return;
    }
    /* The workload watch's cache shows the zero: patch at once, on the condition that the
     * workload is still the version cached (a 409 reads and decides again). */
    const cJSON *wl = es_cached_workload(e);
    const cJSON *r = json_get(json_get(wl, "spec"), "replicas");
    const char *rv = cJSON_IsNumber(r) && r->valueint == 0
                         ? json_str(json_get(wl, "metadata"), "resourceVersion")
                         : NULL;
    struct es_ref *ref = es_ref_new(e);
    if (ref && target_wake_at(e->c->kube_wake, &e->spec.target, e->ns, e->spec.min_replicas, rv,
                              on_wake_done, ref))
        e->wake_inflight = true;
    else if (ref)
        es_ref_take(ref);
    log_info("wake: scaling the target up from zero", "elastiservice=%s target=%s replicas=%d",
             e->key, e->spec.target.name, e->spec.min_replicas);
}

void wake_on_queue(evutil_socket_t fd, short what, void *arg)
{
    struct controller *c = arg;
    struct wake_msg *m = dataplane_wakes_take(c->dp);
    while (m) {
        struct wake_msg *next = m->next;
        struct es *e = es_find(c, svc_state_ns(m->svc), svc_state_name(m->svc));
        if (e && m->kind == WAKE_NEEDED)
            wake_target(e);
        else if (e)
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
