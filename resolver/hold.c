/*
 * hold: held connections and bytes against the service's and the process's limits. See
 * hold.h.
 */
#include "resolver/hold.h"

size_t hold_take(_Atomic long *ctr, size_t max, size_t want)
{
    long cur = atomic_load(ctr);
    for (;;) {
        if (cur < 0 || (size_t)cur >= max)
            return 0;
        size_t can = max - (size_t)cur < want ? max - (size_t)cur : want;
        if (atomic_compare_exchange_weak(ctr, &cur, cur + (long)can))
            return can;
    }
}

size_t hold_reserve(struct svc_state *svc, const struct route_service *r, struct dataplane *dp,
                    size_t want, bool all)
{
    size_t svc_max = r ? r->max_held_bytes : 0;
    size_t got = hold_take(&svc->held_bytes, svc_max, want);
    size_t all_got = hold_take(&dp->held_bytes, dp->limits.max_held_bytes, got);
    if (all_got < got)
        atomic_fetch_sub(&svc->held_bytes, (long)(got - all_got));
    if (all && all_got < want) {
        atomic_fetch_sub(&svc->held_bytes, (long)all_got);
        atomic_fetch_sub(&dp->held_bytes, (long)all_got);
        return 0;
    }
    return all_got;
}

const char *hold_admit(struct svc_state *svc, const struct route_service *r, struct dataplane *dp,
                       size_t need)
{
    if (hold_take(&svc->held_conns, r->max_held_connections, 1) == 0)
        return "hold queue of the service is full";
    if (hold_take(&dp->held_conns, dp->limits.max_held_connections, 1) == 0) {
        atomic_fetch_sub(&svc->held_conns, 1);
        return "hold queue of the resolver is full";
    }
    if (need && hold_reserve(svc, r, dp, need, true) == 0) {
        atomic_fetch_sub(&svc->held_conns, 1);
        atomic_fetch_sub(&dp->held_conns, 1);
        return (size_t)atomic_load(&svc->held_bytes) + need > r->max_held_bytes
                   ? "held bytes of the service at the limit"
                   : "held bytes of the resolver at the limit";
    }
    return NULL;
}

void hold_give_back(struct svc_state *svc, struct dataplane *dp, long conns, size_t bytes)
{
    if (conns) {
        atomic_fetch_sub(&svc->held_conns, conns);
        atomic_fetch_sub(&dp->held_conns, conns);
    }
    if (bytes) {
        atomic_fetch_sub(&svc->held_bytes, (long)bytes);
        atomic_fetch_sub(&dp->held_bytes, (long)bytes);
    }
}

void hold_enqueue(struct hold_q *q, struct hold_entry *e)
{
    if (e->queued)
        return;
    struct hold_entry *after = TAILQ_LAST(q, hold_q);
    while (after && after->arrived_ns > e->arrived_ns)
        after = TAILQ_PREV(after, hold_q, link);
    if (after)
        TAILQ_INSERT_AFTER(q, after, e, link);
    else
        TAILQ_INSERT_HEAD(q, e, link);
    e->queued = true;
}

void hold_dequeue(struct hold_q *q, struct hold_entry *e)
{
    if (!e->queued)
        return;
    TAILQ_REMOVE(q, e, link);
    e->queued = false;
}
