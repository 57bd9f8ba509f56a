/*
 * hold: the hold queue, and the limits on held connections and held bytes.
 *
 * A connection waiting for a ready backend is "held". It counts one held connection and the
 * bytes of its request it buffered, in two sets of counters: its service's (struct svc_state
 * held_conns/held_bytes, limits from the service's route) and the process's (struct dataplane
 * held_conns/held_bytes, limits from dp_limits). Every worker takes from the same
 * counters, so each take is a compare-and-swap that never lets a counter pass its limit:
 * maxHeldBytes bounds memory, it is not a check made once. Bytes are reserved before they are
 * read, and what a read did not use is given back.
 *
 * The hold queue: per service and per worker (svc_worker's `held`, worker-local, no locking),
 * oldest arrival first. A connection that comes back after failed connects goes before every
 * one that arrived after it. Its entry is embedded in the connection (struct conn's `hold`).
 */
#ifndef HOLDFAST_HOLD_H
#define HOLDFAST_HOLD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "resolver/route.h"
#include "resolver/worker.h"

/* A connection's place in its service's hold queue. */
struct hold_entry {
    TAILQ_ENTRY(hold_entry) link;
    uint64_t arrived_ns; /* accept time: the queue's order (and the start of the hold deadline) */
    bool queued;         /* in a queue now */
};

/* Queues e by arrival (after every entry that arrived at or before it). No-op when queued. */
void hold_enqueue(struct hold_q *q, struct hold_entry *e);

/* Takes e out of q. No-op when not queued. */
void hold_dequeue(struct hold_q *q, struct hold_entry *e);

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
