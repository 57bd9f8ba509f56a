/*
 * pick: endpoint choice for held and ready connections. See pick.h.
 */
#include "resolver/pick.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static struct ep_load *load_find(const struct svc_worker *sw, const struct addr *a)
{
    for (size_t i = 0; i < sw->n_loads; i++) {
        if (addr_equal(&sw->loads[i].addr, a))
            return &sw->loads[i];
    }
    return NULL;
}

/* The entry of a, added (nothing in flight, no window) when missing; NULL when out of memory. */
static struct ep_load *load_get(struct svc_worker *sw, const struct addr *a)
{
    struct ep_load *l = load_find(sw, a);
    if (l)
        return l;
    if (sw->n_loads == sw->cap_loads) {
        size_t cap = sw->cap_loads ? sw->cap_loads * 2 : 4;
        struct ep_load *p = realloc(sw->loads, cap * sizeof(*p));
        if (!p)
            return NULL;
        sw->loads = p;
        sw->cap_loads = cap;
    }
    l = &sw->loads[sw->n_loads++];
    memset(l, 0, sizeof(*l));
    l->addr = *a;
    return l;
}

void pick_load_add(struct svc_worker *sw, const struct addr *a, int delta)
{
    struct ep_load *l = delta < 0 ? load_find(sw, a) : load_get(sw, a);
    if (l) /* else out of memory for a new address: balancing gets coarser; nothing breaks */
        l->inflight += (unsigned)delta;
}

struct pace_window *pick_pace(struct svc_worker *sw, const struct addr *a, unsigned initial,
                              uint64_t now_ns)
{
    struct ep_load *l = load_get(sw, a);
    if (!l)
        return NULL;
    if (!l->pace_on) {
        pace_reset(&l->pace, initial, now_ns);
        l->pace_on = true;
    }
    return &l->pace;
}

struct pace_window *pick_pace_find(struct svc_worker *sw, const struct addr *a)
{
    struct ep_load *l = load_find(sw, a);
    return l ? &l->pace : NULL;
}

static bool in_route(const struct route_service *r, const struct addr *a)
{
    for (size_t p = 0; r && p < r->n_ports; p++) {
        for (size_t i = 0; i < r->ports[p].n_endpoints; i++) {
            if (addr_equal(&r->ports[p].endpoints[i], a))
                return true;
        }
    }
    return false;
}

void pick_pace_forget(struct svc_worker *sw, const struct route_service *r)
{
    for (size_t i = 0; i < sw->n_loads; i++) {
        if (sw->loads[i].pace_on && !in_route(r, &sw->loads[i].addr))
            sw->loads[i].pace_on = false;
    }
}

unsigned pick_inflight(const struct svc_worker *sw, const struct addr *a)
{
    const struct ep_load *l = load_find(sw, a);
    return l ? l->inflight : 0;
}

static bool failed_before(const struct addr *a, const struct addr *failed, size_t n_failed)
{
    for (size_t i = 0; i < n_failed; i++) {
        if (addr_equal(&failed[i], a))
            return true;
    }
    return false;
}

const struct addr *pick_endpoint(struct svc_worker *sw, const struct route_port *p,
                                 const struct addr *failed, size_t n_failed)
{
    const struct addr *best = NULL;
    unsigned best_load = 0;
    size_t n = p->n_endpoints;
    for (size_t k = 0; k < n; k++) {
        const struct addr *a = &p->endpoints[(sw->rr + k) % n];
        if (failed_before(a, failed, n_failed))
            continue;
        unsigned load = pick_inflight(sw, a);
        if (!best || load < best_load) {
            best = a;
            best_load = load;
        }
    }
    sw->rr++;
    return best;
}

unsigned pick_backoff_next(unsigned backoff_ms)
{
    unsigned next = backoff_ms ? backoff_ms * 2 : PICK_BACKOFF_MIN_MS;
    return next > PICK_BACKOFF_MAX_MS ? PICK_BACKOFF_MAX_MS : next;
}
