/*
 * pick: which ready endpoint a connection goes to, and how long it waits when none will do.
 *
 * Each worker keeps, per service, the number of its connections bound to each backend address
 * (struct svc_worker's loads) and a round-robin cursor. A connection goes to the endpoint with
 * the fewest of them in flight, round-robin among equals, skipping the endpoints it already
 * failed to connect to. When every endpoint failed for it, it backs off (10 ms, doubling up to
 * 500 ms) and tries them all again. The same per-endpoint entries keep the pacing window of
 * released held connections (pace.h). Worker-local: no locking, no allocation but the loads
 * array's growth.
 */
#ifndef HOLDFAST_PICK_H
#define HOLDFAST_PICK_H

#include <stddef.h>
#include <stdint.h>

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

/* The pacing window of this worker's connections to a (pace.h), started at `initial` when a
 * has none yet (or it was reset: pick_pace_forget). NULL when out of memory (not paced). The
 * pointer is valid until the next call that may add an address. */
struct pace_window *pick_pace(struct svc_worker *sw, const struct addr *a, unsigned initial,
                              uint64_t now_ns);

/* The window of a, or NULL when it has none (no lookup adds one). */
struct pace_window *pick_pace_find(struct svc_worker *sw, const struct addr *a);

/* The endpoints of sw not in route r (NULL: none are) start a new window at their next take:
 * they left the route, and one that comes back is a new pod, or one that restarted. */
void pick_pace_forget(struct svc_worker *sw, const struct route_service *r);

/* The wait before the next round of connect attempts: PICK_BACKOFF_MIN_MS after 0, then
 * doubling, never past PICK_BACKOFF_MAX_MS. */
unsigned pick_backoff_next(unsigned backoff_ms);

#endif
