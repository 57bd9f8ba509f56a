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
 *   struct route_service  one service's route: its listeners, protocol, probe rules, ready
 *                         endpoints, limits and the last error the controller knows.
 *                         Immutable and refcounted: snapshots share the ones that did not
 *                         change.
 *   struct route_snapshot an immutable picture published by the control plane: every
 *                         service's route, in slots of a persistent array that shares its
 *                         unchanged chunks with the snapshot before, so publishing a change
 *                         to k services costs O(k) builds, not O(N). Refcounted.
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
#include "resolver/dataplane.h"
#include "resolver/pace.h"
#include "resolver/probe.h"

struct conn;
struct event;
struct waitpage;

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

/* A backend's load as one worker sees it: connections it has bound there now, and the window
 * its released held connections go through (pace.h). */
struct ep_load {
    struct addr addr;
    unsigned inflight;
    bool pace_on; /* pace holds this endpoint's window (else it starts at the next take) */
    struct pace_window pace; /* released held connections outstanding to it */
};

/* The part of a service that belongs to one worker thread. Only that worker touches it. */
struct svc_worker {
    /* held connections, oldest first (struct hold_entry of each conn: hold.h) */
    TAILQ_HEAD(hold_q, hold_entry) held;
    const struct route_service *route; /* the service in the worker's current snapshot */
    struct ep_load *loads;             /* in-flight count per backend address */
    size_t n_loads, cap_loads;
    unsigned rr;          /* round-robin cursor among least-loaded endpoints */
    bool dispatch_listed; /* in the worker's dispatch list (struct worker's dispatch) */
    bool pace_listed;     /* in the worker's list of services waiting for a pacing slot */
};

/* The latency histograms of a service (svc_state_hists). */
struct svc_hists {
    struct hist hold_seconds;
    struct hist cold_start_seconds;
    /* from the control plane's ready_since_ns to the first held byte written */
    struct hist ready_to_first_byte_seconds;
    /* the control plane's: from the first held request to the scale-up call answered */
    struct hist wake_to_scale_seconds;
};

struct svc_state {
    _Atomic int refs;
    char *ns;   /* namespace */
    char *name; /* service name */
    char *key;  /* "ns/name" */

    /* Limits accounting, all workers together. */
    _Atomic long held_conns;
    _Atomic long held_bytes;

    _Atomic int wake_pending;        /* a wake for this service sits in the wake queue */
    _Atomic int64_t wake_started_ns; /* monotonic time of the wake of this cold start, 0 none */
    _Atomic int64_t first_byte_ns;   /* when the last cold start's first held byte was written
                                        (monotonic), 0 none: for the control plane's phases */

    /* Metrics. */
    _Atomic uint64_t requests[OUTCOME_COUNT];
    _Atomic uint64_t wakes;
    _Atomic uint64_t connect_retries;
    _Atomic uint64_t waiting_pages; /* browser navigations answered with the waiting page */
    /* when a waiting page last signalled a wake (monotonic ns, 0 never): pages signal at most
     * one a WAITPAGE_WAKE_EVERY_MS (conn.c) */
    _Atomic int64_t page_wake_ns;
    _Atomic long pace_waiting; /* held connections of a ready service waiting for a pacing
                                  slot (pace.h), all workers */
    /* Allocated on the first observation (svc_state_hists), freed with the state: most
     * services never hold a request, and at 10,000 services four empty histograms were
     * 5.7 MB (bench/RESULTS.md, 7c and 7d). */
    _Atomic(struct svc_hists *) hists;
    /* Wake latency, in two halves. The control plane sets ready_since_ns (monotonic) when it
     * learns that a held service has a ready endpoint; the first held byte written after that
     * observes ready_to_first_byte. The control plane observes wake_to_scale itself. */
    _Atomic int64_t ready_since_ns;

    struct svc_worker *workers; /* [nworkers] */
    int nworkers;
    struct svc_state *next; /* registry list */
};

/* The service's data-plane histograms, allocated by the first call (from any thread: the first
 * one published wins); NULL only when out of memory (the caller drops its observation). */
struct svc_hists *svc_state_hists(struct svc_state *s);

/* The histograms if any was observed yet, else NULL (for readers: /metrics). */
const struct svc_hists *svc_state_hists_peek(const struct svc_state *s);

/*
 * Writes the service's /metrics label text, `namespace="..",service=".."` (escaped), into buf
 * (at most len - 1 bytes; SVC_LABELS_MAX holds any). Built for each /metrics page, not kept:
 * 10,000 services held 600 bytes of it each (bench/RESULTS.md, 7b and 7c).
 */

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

/* A refcounted, immutable probe rule set, so snapshots can share it. */
struct route_probes {
    _Atomic int refs;
    struct probe_rules *rules; /* owned */
};

/* Takes ownership of rules (NULL allowed: no rules). Returns NULL when out of memory. */
struct route_probes *route_probes_new(struct probe_rules *rules);

/* One port of a service: where connections that arrive for it go. */
struct route_port {
    char *name;                 /* the Service port's name ("" when unnamed); owned */
    enum svc_protocol protocol; /* how its connections are treated while not ready */
    unsigned number;            /* the Service port's number, for Host routing's ":port"; 0 any */
    struct addr *endpoints;     /* ready backends for this port; owned */
    size_t n_endpoints;
};

enum listener_kind {
    LISTENER_SERVICE, /* a port that belongs to one service */
    LISTENER_SHARED,  /* the shared port: the Host header names the service */
};

struct route_service;

/* An address the workers accept on, and where its connections go. */
struct route_listener {
    struct addr addr;
    enum listener_kind kind;
    const struct route_service *service; /* the service it belongs to (LISTENER_SERVICE) */
    size_t port;                         /* index into that service's ports (LISTENER_SERVICE) */
};

/*
 * One service's route: immutable once put in a snapshot, and refcounted, so that a snapshot
 * shares every service that did not change with the one before it. A change to one service
 * builds one route_service; the rest are reused as they are.
 */
struct route_service {
    _Atomic int refs;
    struct svc_state *svc;       /* one reference, owned */
    struct route_probes *probes; /* one reference, owned; may be NULL */
    struct route_port *ports;    /* at least one; owned */
    size_t n_ports;
    struct route_listener *listeners;  /* its resolver ports (kind LISTENER_SERVICE); owned */
    size_t n_listeners, cap_listeners; /* listed; room for (route_service_add_listener) */
    unsigned hold_timeout_s;
    size_t max_held_connections;
    size_t max_held_bytes;
    char *reason; /* why it is not ready, when the control plane knows; owned */
    /* a browser navigation's answer while not ready (owned); NULL: every request is held */
    struct waitpage *page;
};

/*
 * A persistent array: ROUTE_CHUNK entries per chunk, chunks refcounted and shared between
 * snapshots. Changing an entry copies only its chunk (when another snapshot shares it), so
 * deriving a snapshot and changing k entries costs O(n / ROUTE_CHUNK + k), and two snapshots
 * are compared chunk by chunk.
 */
#define ROUTE_CHUNK 64
struct route_chunk;
struct route_vec {
    struct route_chunk **chunks; /* NULL: a chunk of empty entries; each one reference */
    size_t n_chunks;
};

/*
 * An immutable picture of every service, published by the control plane. Services sit in
 * slots the publisher chooses and keeps (a service keeps its slot while it exists), so that
 * two snapshots are compared slot by slot. Built with route_snapshot_derive and
 * route_snapshot_put on the publisher's thread; immutable once published.
 */
struct route_snapshot {
    _Atomic int refs;
    uint64_t generation;    /* set by route_table_publish */
    uint64_t cause_ns;      /* clock_mono_ns() of the change this snapshot carries out, 0 unknown */
    struct route_vec slots; /* slot -> struct route_service (each chunk holds a reference) */
    size_t n_slots;         /* slots 0..n_slots-1 may be taken */
    size_t n_services;      /* slots taken */
    struct route_vec index; /* "ns/name" hash table (open addressing): slot + 1, 0 empty */
    size_t index_size;      /* a power of two (or 0 before the first service) */
    size_t index_used;      /* entries taken, deleted ones included */
    struct route_listener *listeners; /* the shared port's listeners (LISTENER_SHARED); owned */
    size_t n_listeners;
};

/*
 * A new snapshot holding every service of prev (NULL: none), sharing its chunks: O(n_slots /
 * ROUTE_CHUNK). prev's shared listeners are not carried over. NULL when out of memory.
 */

/*
 * Puts r in slot (r NULL: empties it) of a snapshot not yet published, taking the caller's
 * reference to r; what was there is released. O(1) but for the name index, which is rebuilt
 * (O(n)) when it grows. Returns 0, or -1 when out of memory (r released; the snapshot may then
 * be published but lacks r: the publisher should try again).
 */

/* Adds a shared-port listener to a snapshot not yet published. Returns 0 or -1 (OOM). */

/* The service in slot, or NULL. */
const struct route_service *route_snapshot_slot(const struct route_snapshot *s, size_t slot);

/* The first service at a slot >= *slot (which it sets), or NULL when none: for
 * `for (size_t i = 0; (r = route_snapshot_next(s, &i)); i++)`. */
const struct route_service *route_snapshot_next(const struct route_snapshot *s, size_t *slot);

/* Looks a service up by namespace and name. */
const struct route_service *route_snapshot_find(const struct route_snapshot *s, const char *ns,
                                                size_t ns_len, const char *name, size_t name_len);

/* A slot whose service differs between two snapshots. */
struct route_change {
    size_t slot;
    const struct route_service *was; /* in the older snapshot, or NULL */
    const struct route_service *is;  /* in the newer one, or NULL */
};

/*
 * The slots whose service differs from a (NULL: an empty snapshot) to b, in *out (caller
 * frees; NULL when none). Chunks both share are skipped: O(chunks + changed chunks *
 * ROUTE_CHUNK). Returns the count, or -1 when out of memory.
 */
long route_snapshot_diff(const struct route_snapshot *a, const struct route_snapshot *b,
                         struct route_change **out);

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
