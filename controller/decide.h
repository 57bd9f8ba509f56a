/*
 * decide: the controller's decisions about one ElastiService, as pure functions of plain
 * values (times passed in, nothing read from a clock, a cache or the API). The controller
 * gathers the inputs, asks, and acts on the verdict; the unit test covers every branch.
 *
 *   decide_check:    is a scale-down check due (cooldown over, enabled period open, triggers)?
 *   decide_answer:   what one trigger's Prometheus answer says (idle, busy, unhealthy)
 *   decide_switch:   may the switch to zero (the data path first) begin now?
 *   decide_settled:  has the last deletion of the resolver slices had time to propagate?
 *   decide_scale:    what the target's spec.replicas means for the mode (hand scale, serve)
 *   decide_leaving:  is an endpoint one of the pods on their way out (not a reason to serve)?
 *   decide_wake_replicas: how many replicas a wake asks for, from the connections held
 */
#ifndef HOLDFAST_CONTROLLER_DECIDE_H
#define HOLDFAST_CONTROLLER_DECIDE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "controller/prom.h"

/* No scale to zero begins this long after holdfast's own API calls failed (an outage, 5xx):
 * the cluster's other watchers (the EndpointSlice controller, kube-proxy) come back later than
 * holdfast's informers, which retry at once, and a pod removed meanwhile stayed a kube-proxy
 * endpoint after it exited (the soak on the real control plane: the controllers acted again
 * 20 s after a 9 s outage; connections refused, "No route to host"). A scale to zero is never
 * urgent. */
#define DECIDE_API_SETTLE_MS 30000

/* ---- the scale-down check (every polling interval, leader, serving) ---- */

struct decide_check_in {
    int64_t now;            /* wall seconds */
    int64_t created;        /* metadata.creationTimestamp, wall seconds (0: unknown) */
    int64_t last_scaled_up; /* status.lastScaledUpTime, wall seconds (0: never) */
    unsigned cooldown_s;    /* spec.cooldownPeriod */
    bool has_period;        /* spec.enabledPeriod given */
    const char *schedule;   /* its cron schedule and duration (may be NULL) */
    const char *duration;
    size_t n_triggers; /* spec.triggers */
};

enum decide_check {
    DECIDE_CHECK_QUERY,       /* ask every trigger (and its uptime check) */
    DECIDE_CHECK_COOLDOWN,    /* less than the cooldown since the last scale-up (or creation) */
    DECIDE_CHECK_OUTSIDE,     /* outside the enabled period */
    DECIDE_CHECK_NO_TRIGGERS, /* nothing says the service is idle */
};

/*
 * Whether the scale-down check asks the triggers now, with why not in *why (a string literal).
 * An enabledPeriod that does not parse keeps scale to zero enabled (fail open): *period_err
 * (when not NULL) then gets the cron error, "" otherwise.
 */
enum decide_check decide_check(const struct decide_check_in *in, const char **why, char *period_err,
                               size_t errlen);

enum decide_answer {
    DECIDE_ANSWER_IDLE,      /* below the threshold, or Prometheus up for the whole cooldown */
    DECIDE_ANSWER_BUSY,      /* at or above the threshold: no scale to zero */
    DECIDE_ANSWER_UNHEALTHY, /* Prometheus could not answer properly: no scale to zero */
};

/*
 * What one answer says: `uptime` tells the uptime check (value must be 1) from the trigger's
 * query (value must be below threshold). An unhealthy answer's reason goes to why (at most
 * len - 1 bytes): "PROM_STATUS_REASON: prom_reason", or the uptime check's value and filter.
 */
enum decide_answer decide_answer(enum prom_status st, double value, const char *prom_reason,
                                 bool uptime, double threshold, const char *uptime_filter,
                                 char *why, size_t len);

/* ---- the switch to zero (leader) ---- */

/*
 * Whether the last deletion of the resolver slices (slices_deleted_ms, mono ms; 0: none) had
 * time to propagate. A resolver slice deleted a moment ago may still be in kube-proxy's rules:
 * a probe would reach holdfast through it, and the last replica would go before the new slice
 * is in, leaving a gap in which the Service routes only to pods on their way out. So a switch
 * starts only once the last deletion had time to propagate: the grace period, or twice the
 * longest propagation a probe measured, whichever is longer, and at least 1 s. With the
 * default cooldown (15 minutes) this never waits.
 */
bool decide_settled(uint64_t now_ms, uint64_t slices_deleted_ms, uint64_t grace_ms,
                    uint64_t propagation_ms);

struct decide_switch_in {
    uint64_t now_ms;            /* mono ms */
    bool switching;             /* an attempt is under way */
    uint64_t retry_ms;          /* abandoned: no new attempt before this (0: none) */
    uint64_t slices_deleted_ms; /* decide_settled's */
    uint64_t grace_ms;
    uint64_t propagation_ms;
    uint64_t api_back_ms; /* when the API server answered again after failing (0: never) */
};

enum decide_switch {
    DECIDE_SWITCH_BEGIN,     /* write the resolver slice, probe the data path */
    DECIDE_SWITCH_UNDER_WAY, /* already switching */
    DECIDE_SWITCH_ABANDONED, /* abandoned a short while ago: the condition says why */
    DECIDE_SWITCH_UNSETTLED, /* the last slice deletion may not have propagated yet */
    DECIDE_SWITCH_API_BACK,  /* the API server answered again less than DECIDE_API_SETTLE_MS
                                ago: the cluster's controllers and kube-proxy catch up first */
};

/* Whether the switch to zero begins now (the next check asks again otherwise), with why not
 * in *why (a string literal). */
enum decide_switch decide_switch(const struct decide_switch_in *in, const char **why);

/* ---- the target's scale (a /scale read or the workload watch) ---- */

enum decide_scale {
    DECIDE_SCALE_TO_PROXY, /* serving, and scaled to 0 by hand: proxy mode at once */
    DECIDE_SCALE_TO_SERVE, /* proxying, scaled up, and a ready endpoint not on its way out */
    DECIDE_SCALE_WAKING,   /* proxying, scaled up, no ready endpoint yet: diagnose */
    DECIDE_SCALE_SERVING,  /* serving and scaled up: the scale-down check's turn */
    DECIDE_SCALE_NOTHING,  /* proxying at 0 replicas: waiting for a wake */
};

/* `ready` is whether the target has a ready endpoint not on its way out (only read when
 * proxying with replicas > 0). */
enum decide_scale decide_scale(int replicas, bool proxy, bool ready);

/* A pod that was a ready endpoint when proxy mode began, by its address. */
struct leaving_pod {
    char ip[64];
    bool gone; /* a list of the pods showed it deleted, ended or absent: it never serves again */
};

/*
 * Whether a ready endpoint at `ip` is one of the pods that were ready when proxy mode began
 * (leaving[0..n)), on their way out: then it is no reason for the serve switch. One known gone
 * always is (its listing is stale: the EndpointSlice controller is behind, however long); one
 * not known either way until until_ms (mono ms).
 */
bool decide_leaving(const char *ip, const struct leaving_pod *leaving, size_t n, uint64_t until_ms,
                    uint64_t now_ms);

/* ---- the wake's size (any replica, proxying) ---- */

/*
 * The replicas a wake (or a raise while the pods start) asks for: ceil(held / capacity), at
 * least min_replicas and at most max_replicas. capacity 0 (spec.podCapacity absent) asks for
 * min_replicas whatever is held; max_replicas 0 (spec.maxWakeReplicas absent) sets no bound of
 * its own. spec_parse refuses a max below min; were one given, min wins (a wake never asks for
 * fewer replicas than minTargetReplicas). min_replicas below 1 counts as 1; held below 0 as 0.
 */
int decide_wake_replicas(long held, int capacity, int min_replicas, int max_replicas);

#endif
