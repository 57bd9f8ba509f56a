/*
 * conn: one client connection's life, from accept to close. The whole data path is in conn.c,
 * readable top to bottom:
 *
 *   accept -> HEAD (parse the request head) -> probe answer | HELD -> CONNECTING -> RELAY
 *
 * with BACKOFF between connect attempts and ANSWER/LINGER for holdfast's own answers, then
 * close. A connection is closed by marking it; it is freed only when the libevent callback
 * that closed it has returned (conn_reap), never under a caller.
 */
#ifndef HOLDFAST_CONN_H
#define HOLDFAST_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "resolver/route.h"
#include "resolver/worker.h"

/* Takes an accepted, non-blocking socket of listener l and starts its life. */
void conn_accept(struct worker *w, int fd, const struct route_listener *l);

/* The worker switched snapshots, and these slots changed: answer the held connections of
 * services that disappeared, and dispatch those of services that became ready. Called after
 * every svc_worker.route is set. O(changes), not O(services). */
void conn_snapshot_applied(struct worker *w, const struct route_change *changes, size_t n);

/* Dispatches the ready held connections of the services in w->dispatch, a batch per loop turn
 * (continued by w->dispatch_ev). */
void conn_dispatch_held(struct worker *w);

/* A window of pacing slots may have grown by itself (pace.h): the services in w->pace_wait
 * dispatch again (w->pace_ev's callback). */
void conn_pace_stalled(struct worker *w);

/* Frees the connections closed since the last call (w->reap_ev's callback). */
void conn_reap(struct worker *w);

/* Closes and frees every connection of the worker at once (stop). */
void conn_close_all(struct worker *w);

#endif
