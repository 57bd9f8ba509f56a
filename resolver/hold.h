/*
 * hold: the limits on held connections and held bytes, and their accounting.
 *
 * A connection waiting for a ready backend is "held". It counts one held connection and the
 * bytes of its request it buffered, in two sets of counters: its service's (struct svc_state
 * held_conns/held_bytes, limits from the service's route) and the process's (struct dataplane
 * held_conns/held_bytes, limits from config_limits). Every worker takes from the same
 * counters, so each take is a compare-and-swap that never lets a counter pass its limit:
 * maxHeldBytes bounds memory, it is not a check made once. Bytes are reserved before they are
 * read, and what a read did not use is given back.
 *
 * The hold queue itself (per service, per worker, oldest arrival first) is svc_worker's
 * `held` list, kept by conn.c (conn_hold, conn_unhold).
 */
#ifndef HOLDFAST_HOLD_H
#define HOLDFAST_HOLD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "resolver/route.h"
#include "resolver/worker.h"

/* Takes up to `want` from counter ctr whose limit is max. Returns what was taken (0 when the
 * counter is at or past max): the counter never passes max. */
size_t hold_take(_Atomic long *ctr, size_t max, size_t want);

/*
 * Admits one connection with `need` bytes already buffered into the hold of service svc (its
 * limits from route r) and of dp. Returns NULL when admitted (one connection and `need` bytes
 * taken from both sets of counters), or the limit that was reached, as static text for the
 * 503 answer ("hold queue of the service is full", ...), with nothing taken.
 */
const char *hold_admit(struct svc_state *svc, const struct route_service *r, struct dataplane *dp,
                       size_t need);

/*
 * Reserves up to `want` more held bytes from svc's limit (r's; 0 when r is NULL) and dp's.
 * Returns the bytes taken from both; with `all`, either want or nothing.
 */
size_t hold_reserve(struct svc_state *svc, const struct route_service *r, struct dataplane *dp,
                    size_t want, bool all);

/* Gives back `conns` held connections and `bytes` held bytes to svc's and dp's counters. */
void hold_give_back(struct svc_state *svc, struct dataplane *dp, long conns, size_t bytes);

#endif
