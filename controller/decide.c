/*
 * decide: the controller's pure decisions. See decide.h.
 */
#include "controller/decide.h"

#include <stdio.h>
#include <string.h>

#include "controller/cron.h"

enum decide_check decide_check(const struct decide_check_in *in, const char **why, char *period_err,
                               size_t errlen)
{
    if (period_err && errlen)
        period_err[0] = '\0';
    int64_t since = in->last_scaled_up > in->created ? in->last_scaled_up : in->created;
    if (in->now - since < (int64_t)in->cooldown_s) {
        *why = "cooldown not over since the last scale-up";
        return DECIDE_CHECK_COOLDOWN;
    }
    if (in->has_period) {
        bool active = true;
        char err[256];
        if (cron_enabled_period(in->schedule, in->duration, in->now, &active, err, sizeof(err)) <
            0) {
            if (period_err && errlen)
                snprintf(period_err, errlen, "%s", err);
            active = true;
        }
        if (!active) {
            *why = "outside the enabled period";
            return DECIDE_CHECK_OUTSIDE;
        }
    }
    if (in->n_triggers == 0) {
        *why = "no trigger";
        return DECIDE_CHECK_NO_TRIGGERS;
    }
    *why = "";
    return DECIDE_CHECK_QUERY;
}

enum decide_answer decide_answer(enum prom_status st, double value, const char *prom_reason,
                                 bool uptime, double threshold, const char *uptime_filter,
                                 char *why, size_t len)
{
    if (st != PROM_OK) {
        snprintf(why, len, "%s: %s", prom_status_reason(st), prom_reason);
        return DECIDE_ANSWER_UNHEALTHY;
    }
    if (uptime && value != 1) {
        snprintf(why, len,
                 "Prometheus was not up for the whole cooldown (uptime check %g, filter %s)", value,
                 uptime_filter);
        return DECIDE_ANSWER_UNHEALTHY;
    }
    if (!uptime && !(value < threshold))
        return DECIDE_ANSWER_BUSY;
    return DECIDE_ANSWER_IDLE;
}

bool decide_settled(uint64_t now_ms, uint64_t slices_deleted_ms, uint64_t grace_ms,
                    uint64_t propagation_ms)
{
    if (!slices_deleted_ms)
        return true;
    uint64_t settle = grace_ms;
    if (settle < 2 * propagation_ms)
        settle = 2 * propagation_ms;
    if (settle < 1000)
        settle = 1000;
    return now_ms - slices_deleted_ms >= settle;
}

enum decide_switch decide_switch(const struct decide_switch_in *in, const char **why)
{
    if (in->switching) {
        *why = "a switch to zero is under way";
        return DECIDE_SWITCH_UNDER_WAY;
    }
    if (in->retry_ms && in->now_ms < in->retry_ms) {
        *why = "the last switch to zero was abandoned a short while ago";
        return DECIDE_SWITCH_ABANDONED;
    }
    if (!decide_settled(in->now_ms, in->slices_deleted_ms, in->grace_ms, in->propagation_ms)) {
        *why = "the last deletion of the resolver slices may not have propagated yet";
        return DECIDE_SWITCH_UNSETTLED;
    }
    if (in->api_back_ms && in->now_ms - in->api_back_ms < DECIDE_API_SETTLE_MS) {
        *why = "the API server answered again only a moment ago";
        return DECIDE_SWITCH_API_BACK;
    }
    *why = "";
    return DECIDE_SWITCH_BEGIN;
}

enum decide_scale decide_scale(int replicas, bool proxy, bool ready)
{
    if (replicas == 0 && !proxy)
        return DECIDE_SCALE_TO_PROXY;
    if (replicas > 0 && proxy)
        return ready ? DECIDE_SCALE_TO_SERVE : DECIDE_SCALE_WAKING;
    if (replicas > 0)
        return DECIDE_SCALE_SERVING;
    return DECIDE_SCALE_NOTHING;
}

bool decide_leaving(const char *ip, const struct leaving_pod *leaving, size_t n, uint64_t until_ms,
                    uint64_t now_ms)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(leaving[i].ip, ip) == 0)
            return leaving[i].gone || now_ms < until_ms;
    return false;
}

int decide_wake_replicas(long held, int capacity, int min_replicas, int max_replicas)
{
    int min = min_replicas < 1 ? 1 : min_replicas;
    if (capacity < 1 || held <= 0)
        return min;
    long want = (held + capacity - 1) / capacity; /* ceil, held > 0 */
    if (max_replicas > 0 && want > max_replicas)
        want = max_replicas;
    return want < min ? min : (int)want;
}
