/*
 * route: what the data plane knows about services, and the seam through which the control
 * plane tells it.
 *
 * Three things live here:
 *
 *   struct svc_state      one per service for as long as the service exists: its identity,
 *                         its counters and limits accounting (atomics, any thread), and one
 *                         slot per worker (hold queue, endpoint load) that only that worker
 *                         touches. Refcounted; found through the svc_registry.
 *   struct route_snapshot an immutable picture published by the control plane: every
 *                         service's listeners, protocol, probe rules, ready endpoints, limits
 *                         and the last error the controller knows. Refcounted.
 *   struct route_table    the publication point: the control plane publishes a snapshot,
 *                         every worker is notified (event_active on its own base) and picks
 *                         it up; nobody blocks on anybody beyond one short mutex.
 */
#ifndef HOLDFAST_ROUTE_H
#define HOLDFAST_ROUTE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

#include "common/addr.h"
#include "common/metrics.h"
#include "common/strmap.h"
#include "resolver/config.h"
#include "resolver/probe.h"

struct conn;
struct event;

/* Why a request ended, for holdfast_requests_total{outcome}. */
enum outcome {
    OUTCOME_FORWARDED,      /* bound to a backend and relayed */
    OUTCOME_PROBE,          /* answered by a probeResponse rule */
    OUTCOME_TIMEOUT,        /* not ready within the hold timeout (504) */
    OUTCOME_REJECTED,       /* hold queue or held bytes full (503) */
    OUTCOME_CANCELLED,      /* client went away while held */
    OUTCOME_BAD_REQUEST,    /* 400, 408 or 431 */
    OUTCOME_UPSTREAM_ERROR, /* backend closed before any response byte (502) */
    OUTCOME_COUNT,
};

extern const char *const outcome_names[OUTCOME_COUNT];

/* A backend's load as one worker sees it: connections it has bound there now. */
struct ep_load {
    struct addr addr;
    unsigned inflight;
};

/* The part of a service that belongs to one worker thread. Only that worker touches it. */
struct svc_worker {
    TAILQ_HEAD(hold_q, conn) held;     /* held connections, oldest first */
    const struct route_service *route; /* the service in the worker's current snapshot */
    struct ep_load *loads;             /* in-flight count per backend address */
    size_t n_loads, cap_loads;
    unsigned rr; /* round-robin cursor among least-loaded endpoints */
};

struct svc_state {
    _Atomic int refs;
    char *ns;         /* namespace */
    char *name;       /* service name */
    char *key;        /* "ns/name" */
    char labels[600]; /* `namespace="..",service=".."`, prebuilt for /metrics */

    /* Limits accounting, all workers together. */
    _Atomic long held_conns;
    _Atomic long held_bytes;

    _Atomic int wake_pending;        /* a wake for this service sits in the wake queue */
    _Atomic int64_t wake_started_ns; /* monotonic time of the wake of this cold start, 0 none */

    /* Metrics. */
    _Atomic uint64_t requests[OUTCOME_COUNT];
    _Atomic uint64_t wakes;
    _Atomic uint64_t connect_retries;
    struct hist hold_seconds;
    struct hist cold_start_seconds;
    /* Wake latency, in two halves. The control plane sets ready_since_ns (monotonic) when it
     * learns that a held service has a ready endpoint; the first held byte written after that
     * observes ready_to_first_byte. The control plane observes wake_to_scale itself. */
    _Atomic int64_t ready_since_ns;
    struct hist ready_to_first_byte_seconds;
    struct hist wake_to_scale_seconds;

    struct svc_worker *workers; /* [nworkers] */
    int nworkers;
    struct svc_state *next; /* registry list */
};

/* Every svc_state of the process. The registry holds one reference to each. */
struct svc_registry {
    pthread_mutex_t mu;
    struct svc_state *head;
    struct strmap by_key; /* "ns/name" -> svc_state */
    int nworkers;
};

void svc_registry_init(struct svc_registry *reg, int nworkers);
void svc_registry_destroy(struct svc_registry *reg);

/* Finds or creates the state of ns/name. Returns a new reference (svc_state_unref), or NULL
 * when out of memory. */
struct svc_state *svc_registry_get(struct svc_registry *reg, const char *ns, const char *name);

/* Calls fn for each service, under the registry lock (fn must not call back into it). */
void svc_registry_each(struct svc_registry *reg, void (*fn)(struct svc_state *, void *), void *arg);

struct svc_state *svc_state_ref(struct svc_state *svc);
void svc_state_unref(struct svc_state *svc);

/* A refcounted, immutable probe rule set, so snapshots can share it. */
struct route_probes {
    _Atomic int refs;
    struct probe_rules *rules; /* owned */
};

/* Takes ownership of rules (NULL allowed: no rules). Returns NULL when out of memory. */
struct route_probes *route_probes_new(struct probe_rules *rules);
struct route_probes *route_probes_ref(struct route_probes *p);
void route_probes_unref(struct route_probes *p);

/* One port of a service: where connections that arrive for it go. */
struct route_port {
    char *name;                 /* the Service port's name ("" when unnamed); owned */
    enum svc_protocol protocol; /* how its connections are treated while not ready */
    unsigned number;            /* the Service port's number, for Host routing's ":port"; 0 any */
    struct addr *endpoints;     /* ready backends for this port; owned */
    size_t n_endpoints;
};

/* One service in a snapshot. */
struct route_service {
    struct svc_state *svc;       /* one reference, owned by the snapshot */
    struct route_probes *probes; /* one reference, owned by the snapshot; may be NULL */
    struct route_port *ports;    /* at least one; owned */
    size_t n_ports;
    unsigned hold_timeout_s;
    size_t max_held_connections;
    size_t max_held_bytes;
    char *reason; /* why it is not ready, when the control plane knows; owned */
};

enum listener_kind {
    LISTENER_SERVICE, /* a port that belongs to one service */
    LISTENER_SHARED,  /* the shared port: the Host header names the service */
};

struct route_listener {
    struct addr addr;
    enum listener_kind kind;
    size_t service; /* index into services, for LISTENER_SERVICE */
    size_t port;    /* index into that service's ports, for LISTENER_SERVICE */
};

struct route_snapshot {
    _Atomic int refs;
    uint64_t generation; /* set by route_table_publish */
    uint64_t cause_ns;   /* now_ns() of the change this snapshot carries out, 0 unknown */
    struct route_service *services;
    size_t n_services;
    struct route_listener *listeners;
    size_t n_listeners;
    /* Index of services by "ns/name" (open addressing), built by route_snapshot_seal. */
    uint32_t *index; /* slot -> service index + 1, 0 = empty */
    size_t index_size;
};

/* Allocates a snapshot with room for the given counts (zeroed). Returns NULL on OOM. */
struct route_snapshot *route_snapshot_new(size_t n_services, size_t n_listeners);

/* Builds the name index; call once every service is filled in, before publishing. */
int route_snapshot_seal(struct route_snapshot *s);

/* Looks a service up by namespace and name. */
const struct route_service *route_snapshot_find(const struct route_snapshot *s, const char *ns,
                                                size_t ns_len, const char *name, size_t name_len);

struct route_snapshot *route_snapshot_ref(struct route_snapshot *s);
void route_snapshot_unref(struct route_snapshot *s);

#define ROUTE_MAX_SUBSCRIBERS 256

struct route_table {
    pthread_mutex_t mu;
    struct route_snapshot *current; /* one reference owned by the table */
    uint64_t generation;
    struct event *subscribers[ROUTE_MAX_SUBSCRIBERS]; /* made active on each publish */
    size_t n_subscribers;
};

void route_table_init(struct route_table *t);
void route_table_destroy(struct route_table *t);

/* Adds an event (of any base) that is made active whenever a snapshot is published. */
void route_table_subscribe(struct route_table *t, struct event *ev);

/* Publishes s (takes the caller's reference) and notifies every subscriber. */
void route_table_publish(struct route_table *t, struct route_snapshot *s);

/* Returns a new reference to the current snapshot, or NULL when none was published yet. */
struct route_snapshot *route_table_acquire(struct route_table *t);

#endif
