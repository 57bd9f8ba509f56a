/*
 * evaluate: what the leader does with each ElastiService every polling interval. evaluate_check
 * reads the target's /scale (or the workload watch says it); evaluate_apply_scale acts on what the
 * replica count means (a hand scale to zero, a serve switch, a diagnosis) and, serving, runs
 * the scale-down check: cooldown, enabled period, then every trigger's query and uptime check
 * through the shared Prometheus hub; all below their thresholds and healthy begins the switch
 * to zero. The decisions themselves are controller/decide.h; this file gathers their inputs
 * and acts on the verdicts. A skipped evaluation (es_skip) still counts for liveness.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/es.h"

/* ---- scale-down check (leader, every polling interval) ---- */

static void eval_finish(struct es *e)
{
    if (e->evals_pending > 0)
        return;
    e->busy = false;
    e->evaluated_ms = clock_mono_ms();
    e->eval_done_ms = e->evaluated_ms;
    bool changed = e->eval_unhealthy ? es_cond_set(e, "TriggerHealthy", false,
                                                   "PrometheusUnhealthy", es_text(e->eval_reason))
                                     : es_cond_set(e, "TriggerHealthy", true, "QueryOK", "");
    if (e->eval_blocked) {
        if (changed) /* every polling interval otherwise: thousands of writes at scale */
            es_status_sync(e, false);
        return;
    }
    if (e->mode == ES_MODE_PROXY)
        return;
    switch_enter_proxy(e, true, "every trigger stayed below its threshold for the cooldown period");
}

struct eval_ctx {
    struct es_ref *ref;
    size_t trigger;
    bool uptime;
};

static void on_eval(enum prom_status st, double value, const char *reason, void *arg)
{
    struct eval_ctx *x = arg;
    struct es *e = es_ref_take(x->ref);
    if (e && x->trigger < e->spec.n_triggers) {
        /* an answer shared with other ElastiServices is judged for each, as its own */
        e->evals_pending--;
        const struct prom_trigger *t = &e->spec.triggers[x->trigger];
        char why[512];
        enum decide_answer a = decide_answer(st, value, reason, x->uptime, t->threshold,
                                             t->uptime_filter, why, sizeof(why));
        if (st != PROM_OK)
            e->c->prom_errors++;
        if (a == DECIDE_ANSWER_UNHEALTHY) {
            e->eval_blocked = true;
            e->eval_unhealthy = true;
            es_text_setf(&e->eval_reason, sizeof(why), "%s", why);
        } else if (a == DECIDE_ANSWER_BUSY) {
            e->eval_blocked = true;
        }
        eval_finish(e);
    }
    free(x);
}

/* For prom_hub_free: an ask never answered (the controller stops). */
void evaluate_drop(void *arg)
{
    struct eval_ctx *x = arg;
    free(x->ref->ns);
    free(x->ref->name);
    free(x->ref);
    free(x);
}

/* Asks for trigger i's query or its uptime check: the answer may be one shared with other
 * ElastiServices asking the same (prom_hub), if sent since fresh_after. */
static void eval_send(struct es *e, size_t i, bool uptime, uint64_t fresh_after)
{
    struct eval_ctx *x = calloc(1, sizeof(*x));
    if (!x || !(x->ref = es_ref_new(e))) {
        free(x);
        e->eval_blocked = true;
        return;
    }
    x->trigger = i;
    x->uptime = uptime;
    char *q =
        uptime ? prom_uptime_query(e->spec.triggers[i].uptime_filter, e->spec.cooldown_s) : NULL;
    const char *query = uptime ? q : e->spec.triggers[i].query;
    struct prom_ask *ask =
        query ? prom_hub_ask(e->c->prom, &e->spec.triggers[i], query, fresh_after, on_eval, x)
              : NULL;
    free(q);
    if (!ask) {
        es_ref_take(x->ref);
        free(x);
        e->eval_blocked = true;
        return;
    }
    e->evals_pending++;
}

static void scale_down_check(struct es *e)
{
    struct decide_check_in in = {
        .now = clock_wall_s(),
        .created = e->created,
        .last_scaled_up = e->last_scaled_up,
        .cooldown_s = e->spec.cooldown_s,
        .has_period = e->spec.has_period,
        .schedule = e->spec.schedule,
        .duration = e->spec.duration,
        .n_triggers = e->spec.n_triggers,
    };
    const char *why;
    char err[256];
    enum decide_check verdict = decide_check(&in, &why, err, sizeof(err));
    if (err[0])
        log_warn("enabledPeriod invalid: scale-to-zero stays enabled (fail open)",
                 "elastiservice=%s error=%s", e->key, err);
    if (verdict != DECIDE_CHECK_QUERY)
        return;
    e->busy = true;
    e->busy_since_ms = clock_mono_ms();
    e->busy_what = "querying Prometheus";
    e->busy_throttled = -1; /* Prometheus is not behind the API rate limit */
    e->stuck_logged = false;
    e->eval_blocked = e->eval_unhealthy = false;
    es_text_clear(&e->eval_reason);
    e->evals_pending = 0;
    uint64_t fresh_after = e->eval_done_ms;
    for (size_t i = 0; i < e->spec.n_triggers; i++) {
        eval_send(e, i, true, fresh_after);
        eval_send(e, i, false, fresh_after);
    }
    if (e->evals_pending == 0) {
        e->busy = false;
        return;
    }
}

/*
 * status.lastReconciledTime shows the evaluations without a write per poll: it is refreshed
 * when older than the heartbeat (default the larger of 5 minutes, 10 polling intervals, and
 * what keeps these writes under a quarter of the API rate limit). So it is never more than one
 * heartbeat plus one polling interval old while this ElastiService is evaluated.
 */
static unsigned heartbeat_s(const struct controller *c)
{
    if (c->opt.status_heartbeat_s)
        return c->opt.status_heartbeat_s;
    double qps = c->opt.api_qps > 0 ? c->opt.api_qps : CONTROLLER_DEFAULT_API_QPS;
    double paced = (double)c->by_name.used * 4 / qps;
    double s = 300;
    if (s < c->opt.polling_interval_ms / 100.0)
        s = c->opt.polling_interval_ms / 100.0;
    if (s < paced)
        s = paced;
    return (unsigned)s;
}

static void es_heartbeat(struct es *e)
{
    int64_t now = clock_wall_s();
    bool awaiting = e->awaited_rv && clock_mono_ms() - e->awaited_ms <= STATUS_AWAIT_ECHO_MS;
    if (!e->c->leader || e->status_inflight > 0 || awaiting ||
        now - e->reconciled_at < (int64_t)heartbeat_s(e->c))
        return;
    es_status_sync(e, true);
}

static void on_scale_read(const struct target_result *res, const struct kube_error *err, void *arg);

/* The target's current scale decides manual transitions and the scale-down check. */
static void on_scale(const struct target_result *res, const struct kube_error *err, void *arg)
{
    struct es *e = es_ref_take(arg);
    if (!e)
        return;
    e->busy = false;
    e->evaluated_ms = clock_mono_ms();
    e->c->evaluations++;
    if (err) {
        if (es_cond_set(e, "Ready", false,
                        err->code == KUBE_ERR_NOT_FOUND ? "TargetNotFound" : "TargetUnreadable",
                        err->message))
            es_status_sync(e, false);
        return;
    }
    evaluate_apply_scale(e, res->scale.spec_replicas, true);
}

/*
 * What the target's spec.replicas means, from a poll's /scale read or from the workload watch
 * (poll false: no scale-down check, which runs once per polling interval only).
 */
void evaluate_apply_scale(struct es *e, int replicas, bool poll)
{
    bool proxy = e->mode == ES_MODE_PROXY;
    if (replicas > 0)
        e->awaiting_wake = false; /* scaled up (a wake by another replica, a hand) */
    /*
     * Writes of a transition that failed (API outage) are made again here, every poll: the
     * status (mode, ports, conditions; Ready back from TargetUnreadable once /scale answers),
     * and, below, the delete of resolver slices left behind in serve mode. (Bug found by
     * test_api_outage_after_wake_patch_completes_when_api_returns: a serve switch during an
     * outage left status.mode "proxy" and the resolver slice in place for good.)
     */
    if (e->mode != ES_MODE_NONE && (es_cond_reason_is(e, "Ready", "TargetUnreadable") ||
                                    es_cond_reason_is(e, "Ready", "TargetNotFound"))) {
        es_cond_set(e, "Ready", true, proxy ? "Proxying" : "Serving",
                    proxy ? "traffic goes to the resolver, which holds requests"
                          : "traffic goes to the target's pods");
        e->status_dirty = true;
    }
    if (e->status_dirty && e->mode != ES_MODE_NONE) {
        e->status_dirty = false; /* set again if this write fails too */
        routes_publish_now(e);
        es_status_sync(e, true);
    }
    bool ready = replicas > 0 && proxy && es_has_ready_endpoint(e, NULL, 0);
    switch (decide_scale(replicas, proxy, ready)) {
    case DECIDE_SCALE_TO_PROXY:
        switch_enter_proxy(e, false, "the target was scaled to 0 by hand");
        break;
    case DECIDE_SCALE_TO_SERVE:
        switch_enter_serve(e);
        break;
    case DECIDE_SCALE_WAKING:
        if (poll)
            wake_diagnose(e); /* woken, not ready yet: is something in the way? */
        break;
    case DECIDE_SCALE_NOTHING:
        break;
    case DECIDE_SCALE_SERVING:
        if (e->mode == ES_MODE_NONE) {
            es_set_mode(e, ES_MODE_SERVE, "the target has replicas");
            es_cond_set(e, "Ready", true, "Serving", "traffic goes to the target's pods");
            es_status_sync(e, true);
        }
        if (!e->switching) {
            /* a switch cut short (the leadership moved on, a restart) left its condition */
            if (es_cond_reason_is(e, "ScaledToZero", "AwaitingDataPath")) {
                es_cond_set(e, "ScaledToZero", false, "Serving", "the target has ready endpoints");
                es_status_sync(e, false);
            }
            /* serving: none should be left (a failed delete, or a leader gone between its
             * slice write and its status write). Only once a pod serves: before, the slice is
             * the Service's only usable endpoint (found by the soak: a new leader deleted it
             * while the pods of a hand scale-up were starting, and kube-proxy refused). */
            if (es_has_ready_endpoint(e, NULL, 0))
                resolver_slices_delete(e);
            if (poll)
                scale_down_check(e);
        }
        break;
    }
    if (poll && e->scaled_up_unwritten && e->status_inflight == 0)
        es_status_sync(e, true); /* a wake's lastScaledUpTime, no serve switch since */
    else if (poll)
        es_heartbeat(e);
}

/*
 * An ElastiService the poll did not evaluate, and why: that counts as looked at (its round
 * goes on). A new reason is logged once; "not leading" is the replica's, logged by the
 * election, not once per ElastiService.
 */
static void es_skip(struct es *e, const char *why)
{
    e->evaluated_ms = clock_mono_ms();
    e->c->evaluations++;
    if (e->skip_reason && strcmp(e->skip_reason, why) == 0)
        return;
    e->skip_reason = why;
    if (*why && strcmp(why, "not leading") != 0)
        log_info("elastiservice not evaluated", "elastiservice=%s reason=%s", e->key, why);
}

/* The poll's evaluation: read the target's /scale (on_scale goes on from there). */
void evaluate_check(struct es *e)
{
    char why[256];
    if (e->busy)
        return; /* still evaluating: not looked at again, so a stuck one holds its round */
    if (!e->c->leader) {
        es_skip(e, "not leading");
    } else if (e->deleting) {
        es_skip(e, "being deleted");
    } else if (e->spec_error) {
        es_skip(e, "invalid spec (condition Ready=False InvalidSpec)");
    } else if (!e->spec.target_ok) {
        es_skip(e, "no scale target");
    } else if (es_service_unsupported(e, why, sizeof(why))) {
        es_skip(e, "unsupported Service (condition Ready=False UnsupportedService)");
    } else {
        e->skip_reason = NULL;
        struct es_ref *ref = es_ref_new(e);
        if (!ref)
            return;
        e->busy = true;
        e->busy_since_ms = clock_mono_ms();
        e->busy_what = "reading the target's /scale";
        e->busy_throttled = kube_client_throttled_seconds(e->c->kube);
        e->stuck_logged = false;
        ref->scale_epoch = e->scale_epoch;
        if (!target_get_scale(e->c->kube, &e->spec.target, e->ns, on_scale_read, ref)) {
            e->busy = false;
            es_ref_take(ref);
        }
    }
}

/* A /scale read sent before a workload watch event is older than what that event said: the
 * evaluation counts, its replicas do not. */
static void on_scale_read(const struct target_result *res, const struct kube_error *err, void *arg)
{
    struct es_ref *ref = arg;
    struct es *e = es_find(ref->c, ref->ns, ref->name);
    if (e && !err && ref->scale_epoch != e->scale_epoch) {
        es_ref_take(ref);
        e->busy = false;
        e->evaluated_ms = clock_mono_ms();
        e->c->evaluations++;
        e->next_check_ms = 0; /* read again at the next tick */
        return;
    }
    on_scale(res, err, ref);
}

/* ---- polling and liveness ---- */

/*
 * Reads the targets' /scale, each at least once per polling interval (the next read is due one
 * interval less up to a tenth after this one, so services do not move in lockstep, and the
 * timer is set for the earliest one due, so the interval is kept, not rounded up to a tick).
 * Paced: no more polls are queued for the API client's rate limiter than it hands out in a
 * second, so a status or slice write waits behind a second's worth of polls at most, never
 * behind one per ElastiService (10,000 of them at 20 requests/s would be 500 s). A round that
 * cannot be finished resumes where it stopped; when the rate limit cannot keep the interval,
 * that is logged once.
 */
#define POLL_TICK_MS 1000
#define POLL_BEHIND_MS 100

/* How long a round may take before /healthz fails: the longer of 5 polling intervals and 3
 * times what the rate limit needs for one read per ElastiService, plus 2 API deadlines (a call
 * that times out is an evaluation that failed, not a wedge). */
uint64_t evaluate_liveness_bound_ms(const struct controller *c)
{
    if (c->opt.liveness_bound_ms)
        return c->opt.liveness_bound_ms;
    double qps = c->opt.api_qps > 0 ? c->opt.api_qps : CONTROLLER_DEFAULT_API_QPS;
    double paced_ms = (double)c->by_name.used * 1000.0 / qps;
    double ms = 5.0 * c->opt.polling_interval_ms;
    if (ms < 3 * paced_ms)
        ms = 3 * paced_ms;
    long api =
        c->opt.api_timeout_ms > 0 ? c->opt.api_timeout_ms : CONTROLLER_DEFAULT_API_TIMEOUT_MS;
    return (uint64_t)ms + 2 * (uint64_t)api;
}

/* Of the time since kube_client_throttled_seconds read `since`, the milliseconds the main
 * client's rate limiter accounts for (its pace, spent on calls that waited for a token and were
 * answered). */
double evaluate_throttled_ms(const struct controller *c, double since)
{
    return since < 0 ? 0 : (kube_client_throttled_seconds(c->kube) - since) * 1000.0;
}

/*
 * Rounds: one completes when every ElastiService was evaluated (or skipped, with its reason)
 * after the round began. An evaluation that never ends holds its round open: past the bound,
 * that is logged at warn with the object and what it waits for, and /healthz fails.
 *
 * A round waiting on the API rate limiter is slow, not wedged: the time the limiter accounts
 * for since the round (or the evaluation) began (calls that waited for a token and were
 * answered, 1/qps each) does not count against the bound. The first round after a start with
 * thousands of ElastiServices queues several writes for each (finalizer, resolver slice,
 * status, Event); at 20/s that is minutes, all of it progress. A round that makes none (no
 * answers: an API server that accepts and never answers, an evaluation that never ends while
 * the limiter is idle) still fails /healthz past the bound.
 */
void evaluate_liveness_update(struct controller *c)
{
    /* read now, not at the poll's start: an evaluation begun since then is younger than that */
    uint64_t now = clock_mono_ms();
    const struct es *oldest = NULL;
    double bound = (double)evaluate_liveness_bound_ms(c);
    for (struct es *e = c->list; e; e = e->next) {
        if (!oldest || e->evaluated_ms < oldest->evaluated_ms)
            oldest = e;
        if (e->busy && !e->stuck_logged &&
            (double)(now - e->busy_since_ms) - evaluate_throttled_ms(c, e->busy_throttled) >
                bound) {
            e->stuck_logged = true;
            log_warn("an evaluation is stuck", "elastiservice=%s waiting_for=%s seconds=%f", e->key,
                     e->busy_what ? e->busy_what : "?", (double)(now - e->busy_since_ms) / 1000.0);
        }
    }
    if (!oldest || oldest->evaluated_ms >= c->round_start_ms) {
        c->round_done_ms = now;
        c->round_start_ms = now;
        c->round_throttled = kube_client_throttled_seconds(c->kube);
        if (c->wedged_logged)
            log_info("evaluation rounds complete again", NULL);
        c->wedged_logged = false;
        c->wedged_why[0] = '\0';
        return;
    }
    double age = (double)(now - c->round_done_ms);
    double throttled = evaluate_throttled_ms(c, c->round_throttled);
    if (age - throttled <= bound)
        return;
    snprintf(c->wedged_why, sizeof(c->wedged_why),
             "no evaluation round completed for %.0f s (bound %.0f s beyond the %.0f s the API "
             "rate limit accounts for): elastiservice %s %s%s",
             age / 1000.0, bound / 1000.0, throttled / 1000.0, oldest->key,
             oldest->busy ? "waits for " : "was last evaluated long ago",
             oldest->busy && oldest->busy_what ? oldest->busy_what : "");
    if (!c->wedged_logged) {
        c->wedged_logged = true;
        log_warn("the control loop is wedged: /healthz fails", "why=%s", c->wedged_why);
    }
}

/*
 * When an ElastiService checked at `now` is checked next: at its own phase of the interval
 * (from a hash of its name, so the same on every replica and after a restart), so the
 * checks, and the Prometheus queries they lead to, are spread over the interval instead of
 * coming all at once (every ElastiService is due at once after a start or a relist). The gap
 * is between half an interval and one interval: never longer than before, and phase is
 * reached by the second check.
 */
uint64_t evaluate_next_check_at(const struct es *e, uint64_t now, unsigned interval)
{
    uint64_t phase = strmap_hash(STRMAP_SEED, e->key, strlen(e->key)) % interval;
    uint64_t at = now + interval;
    uint64_t past = (at + interval - phase) % interval; /* how far `at` is past the phase */
    return past <= interval / 2 ? at - past : now + interval / 2;
}

void evaluate_on_poll(evutil_socket_t fd, short what, void *arg)
{
    struct controller *c = arg;
    uint64_t now = clock_mono_ms();
    unsigned interval = c->opt.polling_interval_ms;
    double qps = c->opt.api_qps ? c->opt.api_qps : CONTROLLER_DEFAULT_API_QPS;
    size_t room = qps >= 1 ? (size_t)qps : 1;
    struct es *start = c->poll_cursor ? c->poll_cursor : c->list;
    struct es *e = start;
    bool behind = false;
    while (e) {
        if (e->next_check_ms <= now) {
            if (kube_client_queued(c->kube) >= room) {
                behind = true;
                break;
            }
            evaluate_check(e);
            e->next_check_ms = evaluate_next_check_at(e, now, interval);
        }
        e = e->next ? e->next : c->list;
        if (e == start)
            break;
    }
    c->poll_cursor = behind ? e : NULL;
    if (behind && e->next_check_ms + interval <= now && !c->polls_behind) {
        c->polls_behind = true;
        log_warn("the API rate limit cannot keep the polling interval: targets are read less "
                 "often (raise --kube-api-qps, or the polling interval)",
                 "elastiservices=%zu polling_interval_ms=%u", c->by_name.used, interval);
    }
    evaluate_liveness_update(c);
    for (struct es *x = c->list; x; x = x->next) {
        es_leaving_poll(x);
        early_poll(x);
    }
    es_linger_sweep(c, NULL);
    uint64_t next = now + POLL_TICK_MS;
    for (const struct es *x = c->list; x && !behind; x = x->next) {
        if (x->next_check_ms < next)
            next = x->next_check_ms;
    }
    uint64_t ms = behind ? POLL_BEHIND_MS : next > now ? next - now : 1;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(c->poll_ev, &tv);
}
