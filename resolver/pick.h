/*
 * pick: which ready endpoint a connection goes to, and how long it waits when none will do.
 *
 * Each worker keeps, per service, the number of its connections bound to each backend address
 * (struct svc_worker's loads) and a round-robin cursor. A connection goes to the endpoint with
 * the fewest of them in flight, round-robin among equals, skipping the endpoints it already
 * failed to connect to. When every endpoint failed for it, it backs off (10 ms, doubling up to
 * 500 ms) and tries them all again. Worker-local: no locking, no allocation but the loads
 * array's growth.
 */
#ifndef HOLDFAST_PICK_H
#define HOLDFAST_PICK_H

#include <stddef.h>

#include "common/addr.h"
#include "resolver/route.h"

#define PICK_BACKOFF_MIN_MS 10
#define PICK_BACKOFF_MAX_MS 500

/* Adds delta (+1 bound, -1 let go) to the in-flight count of backend a. Out of memory for a
 * new address only makes balancing coarser: the count is not kept. */
void pick_load_add(struct svc_worker *sw, const struct addr *a, int delta);

/* The connections of this worker in flight to a (0 when none or unknown). */
unsigned pick_inflight(const struct svc_worker *sw, const struct addr *a);

/*
 * The endpoint of p with the fewest in flight among those not in failed[0, n_failed),
 * round-robin among equals (the cursor advances on every call). Returns a pointer into
 * p->endpoints, or NULL when every endpoint is in failed (or p has none).
 */
const struct addr *pick_endpoint(struct svc_worker *sw, const struct route_port *p,
                                 const struct addr *failed, size_t n_failed);

/* The wait before the next round of connect attempts: PICK_BACKOFF_MIN_MS after 0, then
 * doubling, never past PICK_BACKOFF_MAX_MS. */
unsigned pick_backoff_next(unsigned backoff_ms);

#endif
