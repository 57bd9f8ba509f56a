/*
 * pick: endpoint choice for held and ready connections. See pick.h.
 */
#include "resolver/pick.h"

#include <stdbool.h>
#include <stdlib.h>

void pick_load_add(struct svc_worker *sw, const struct addr *a, int delta)
{
    for (size_t i = 0; i < sw->n_loads; i++) {
        if (addr_equal(&sw->loads[i].addr, a)) {
            sw->loads[i].inflight += (unsigned)delta;
            return;
        }
    }
    if (delta < 0)
        return;
    if (sw->n_loads == sw->cap_loads) {
        size_t cap = sw->cap_loads ? sw->cap_loads * 2 : 4;
        struct ep_load *p = realloc(sw->loads, cap * sizeof(*p));
        if (!p)
            return; /* balancing gets coarser; nothing breaks */
        sw->loads = p;
        sw->cap_loads = cap;
    }
    sw->loads[sw->n_loads].addr = *a;
    sw->loads[sw->n_loads].inflight = (unsigned)delta;
    sw->n_loads++;
}

unsigned pick_inflight(const struct svc_worker *sw, const struct addr *a)
{
    for (size_t i = 0; i < sw->n_loads; i++) {
        if (addr_equal(&sw->loads[i].addr, a))
            return sw->loads[i].inflight;
    }
    return 0;
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
