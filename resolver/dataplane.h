/*
 * dataplane: the data plane's one face. Everything outside resolver/ (the process, the
 * Kubernetes control plane, the standalone control plane) reaches the data plane through this
 * header and nothing else; the types it names are opaque here.
 *
 * The seam has two directions (docs/architecture.md):
 *   - control plane -> workers: route snapshots. A control plane builds one route per service
 *     (route_service_*), puts it in a snapshot slot it chooses and keeps (route_snapshot_*), and
 *     publishes the snapshot (dataplane_publish), which opens the listeners new routes name
 *     and closes the ones no published route names any more. Routes and snapshots are
 *     immutable once published and refcounted, so a snapshot shares every route that did not
 *     change with the one before it.
 *   - workers -> control plane: the wake queue ("this service needs a pod", "this backend
 *     refused"), drained by the control thread (dataplane_wakes_take).
 * What a control plane reads or marks on a service outside snapshots (held connections, the
 * moments a cold start is measured from) goes through its service handle (svc_state_*).
 *
 * Threads: dataplane_new/start/stop/free on the main thread; everything else on the one
 * control thread, except where a function says it is safe from any thread.
 */
#ifndef HOLDFAST_DATAPLANE_H
#define HOLDFAST_DATAPLANE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/addr.h"
#include "common/metrics.h"

struct cJSON;
struct event;

/* ---- what the data plane is given ---- */

/* How a service's connections are treated while no backend is ready. */
enum svc_protocol {
    PROTO_HTTP, /* HTTP/1.x parsed for probes; h2c and TLS detected and held raw */
    PROTO_TCP,  /* opaque bytes; the wake is queued on accept (server-speaks-first works) */
};

/* Limits that hold across all services, and per-connection sizes. */
struct dp_limits {
    size_t max_held_connections; /* all services together; default 50000 */
    size_t max_held_bytes;       /* all services together; default 256 MiB */
    size_t hold_buffer_bytes;    /* per held connection, then reads stop; default 64 KiB */
    size_t max_head_bytes;       /* request head limit, 431 past it; default 32 KiB */
    unsigned head_timeout_s;     /* complete head within this, else 408; default 30 */
    unsigned idle_timeout_s;     /* relayed connection idle timeout, 0 = none (default) */
    unsigned connect_timeout_ms; /* one backend connect attempt; default 2000 */
    bool pace_held; /* released held connections go through a window per endpoint (--pace-held;
                       resolver/pace.h); default true */
};

/* Fills `limits` with the defaults above. */
void dp_limits_default(struct dp_limits *limits);

/* ---- lifecycle ---- */

struct dataplane;

/* Creates the data plane with n workers (threads not started). NULL on failure. */
struct dataplane *dataplane_new(int nworkers, const struct dp_limits *limits);
/* Starts the worker threads. Returns 0, or -1 with a message in err. */
int dataplane_start(struct dataplane *dp, char *err, size_t errlen);
/* True once every worker has applied the current snapshot and shutdown has not begun (for
 * /readyz). Any thread. */
bool dataplane_ready(struct dataplane *dp);
/* Shutdown begins (SIGTERM): dataplane_ready is false from now on; listeners still accept
 * until dataplane_drain (the shutdown delay). Any thread. */
void dataplane_set_stopping(struct dataplane *dp);
/* Connections open now across all workers. Any thread. */
long dataplane_open_connections(struct dataplane *dp);
/* The process-wide limit of held bytes (a route's own limit never exceeds it). */
size_t dataplane_max_held_bytes(const struct dataplane *dp);
/* Asks every worker to close its listeners and finish its connections (SIGTERM). */
void dataplane_drain(struct dataplane *dp);
/* Asks every worker to close everything and stop, then joins the threads. */
void dataplane_stop(struct dataplane *dp);
void dataplane_free(struct dataplane *dp);

/* Appends the data plane's metric families to out: per service (only services that saw
 * traffic), then process-wide. `admin_fd_exhausted` is the admin endpoint's own count of
 * accept pauses, shown in the same family as the data listeners'. Any thread. */
void dataplane_metrics(struct mtext *out, struct dataplane *dp, uint64_t admin_fd_exhausted);

/*
 * Opens a listening TCP socket (backlog 4096, non-blocking) bound to addr, with SO_REUSEPORT
 * when `reuseport`. Returns the fd, or -1 with a message naming the address in err. For the
 * process's own listeners (the admin endpoint); the data plane opens its own in
 * dataplane_publish.
 */
int listener_socket(const struct addr *addr, bool reuseport, char *err, size_t errlen);

/* ---- services ---- */

/*
 * A service's state that outlives snapshots: its hold queues, counters and limit accounting.
 * One per namespace/name for the life of the process's references to it.
 */
struct svc_state;

/* Finds or creates the service ns/name. Returns a new reference (svc_state_unref), or NULL
 * when out of memory. */
struct svc_state *dataplane_service(struct dataplane *dp, const char *ns, const char *name);
struct svc_state *svc_state_ref(struct svc_state *s);
void svc_state_unref(struct svc_state *s); /* NULL is fine */
const char *svc_state_ns(const struct svc_state *s);
const char *svc_state_name(const struct svc_state *s);
/* "namespace/name", for log lines. */
const char *svc_state_key(const struct svc_state *s);
/* Connections held now for this service, all workers together. Any thread. */
long svc_state_held(const struct svc_state *s);
/* The control plane learned at `since_ns` (monotonic) that the service has a ready endpoint:
 * the first held byte written after it measures ready_to_first_byte. Ignored while nothing is
 * held. */
void svc_state_mark_ready(struct svc_state *s, uint64_t since_ns);
/* When the wake of this cold start began (the first held request, monotonic ns), 0 none. */
uint64_t svc_state_wake_started_ns(const struct svc_state *s);
/* When the first held byte of the last cold start was written to a backend (monotonic ns; the
 * moment svc_state_wake_started_ns went back to 0), 0 none yet. Any thread. */
uint64_t svc_state_first_byte_ns(const struct svc_state *s);
/* Observes the control plane's part of a wake: first held request -> scale call answered. */
void svc_state_observe_wake_to_scale(struct svc_state *s, uint64_t ns);
/* The room the /metrics label text of a service takes (svc_state_labels). */
#define SVC_LABELS_MAX 600
/* The service's /metrics labels, `namespace="..",service=".."` (escaped), in buf (at most
 * len - 1 bytes; SVC_LABELS_MAX holds any). */
void svc_state_labels(const struct svc_state *s, char *buf, size_t len);

/* ---- probeResponse rules ---- */

/* A service's probeResponse rules, compiled, refcounted and immutable: routes share them. */
struct route_probes;

/*
 * Parses and compiles a probeResponse array (NULL or an empty array: no rules). Returns a new
 * reference, or NULL with one message in err naming `path` and what is wrong ("path[0].path.
 * type: must be one of Exact, PathPrefix, RegularExpression"), or "out of memory".
 */
struct route_probes *route_probes_parse(const struct cJSON *array, const char *path, char *err,
                                        size_t errlen);
size_t route_probes_count(const struct route_probes *p);
struct route_probes *route_probes_ref(struct route_probes *p);
void route_probes_unref(struct route_probes *p); /* NULL is fine */

/* ---- the waiting page (holdfast addition) ---- */

#define WAITING_PAGE_DEFAULT_RETRY_S 2
#define WAITING_PAGE_MAX_RETRY_S 3600
#define WAITING_PAGE_MAX_HTML (64 * 1024)

/* A service's `waitingPage` setting, as parsed: what a browser navigation gets while the
 * service has no ready backend (resolver/waitpage.h). */
struct waiting_page_spec {
    bool enabled;           /* off by default: every request is held */
    unsigned retry_after_s; /* Retry-After and the page's refresh, 1..3600; default 2 */
    char *html;             /* the page as given, owned; NULL: the built-in page */
    size_t html_len;        /* 1..WAITING_PAGE_MAX_HTML bytes */
};

/*
 * Parses a waitingPage object (NULL or a JSON null: absent, the defaults) into *out, which it
 * clears first (out must be zeroed or hold a parsed setting). Returns 0, or -1 with one message
 * in err naming `path` and the field ("spec.waitingPage.retryAfterSeconds: must be an integer
 * from 1 to 3600"). Unknown keys are refused. Free with waiting_page_spec_clear.
 */
int waiting_page_parse(const struct cJSON *obj, const char *path, struct waiting_page_spec *out,
                       char *err, size_t errlen);
void waiting_page_spec_clear(struct waiting_page_spec *p);

/* ---- routes ---- */

/* Where connections for one service go: its ports, their ready endpoints, its resolver
 * listeners, limits and probe rules. Built by one control plane, immutable once put in a
 * snapshot. */
struct route_service;

/* A route for svc with n_ports ports (zeroed: set each with route_service_set_port) and room
 * for max_listeners listeners. Takes the caller's reference to svc. NULL when out of memory
 * (svc is released then). */
struct route_service *route_service_new(struct svc_state *svc, size_t n_ports,
                                        size_t max_listeners);
/* Port i: its name ("" unnamed), protocol, the Service port number (Host routing's ":port";
 * 0 any), and its ready endpoints (copied). Returns 0, or -1 when out of memory. */
int route_service_set_port(struct route_service *r, size_t i, const char *name,
                           enum svc_protocol protocol, unsigned number,
                           const struct addr *endpoints, size_t n_endpoints);
/* Connections accepted on addr go to port i. At most max_listeners; returns 0, or -1 when
 * full. The socket is opened by dataplane_publish. */
int route_service_add_listener(struct route_service *r, size_t port, const struct addr *addr);
/* How long a connection is held (504 after), and how many connections and bytes at most. */
void route_service_set_limits(struct route_service *r, unsigned hold_timeout_s,
                              size_t max_connections, size_t max_bytes);
/* The probeResponse rules answered while not ready (a new reference is taken; NULL none). */
void route_service_set_probes(struct route_service *r, struct route_probes *probes);
/* Answers a browser navigation while no backend is ready with a waiting page: html[0,
 * html_len) (copied), or the built-in page naming the service when html is NULL, with
 * Retry-After and a refresh of retry_after_s seconds. Rendered here, once per route. Returns 0,
 * or -1 when out of memory. Without this call the route holds every request. */
int route_service_set_waiting_page(struct route_service *r, const char *html, size_t html_len,
                                   unsigned retry_after_s);
/* Why the service is not ready, as the control plane knows it: what a 504 says (copied; NULL
 * none). Returns 0, or -1 when out of memory. */
int route_service_set_reason(struct route_service *r, const char *reason);
/* Some port of the route has a ready endpoint. */
bool route_service_has_endpoints(const struct route_service *r);
struct route_service *route_service_ref(struct route_service *r);
void route_service_unref(struct route_service *r); /* NULL is fine */

/* ---- snapshots ---- */

/* An immutable picture of every service, as slots the publisher chooses and keeps: a service
 * keeps its slot while it exists, so workers compare two snapshots slot by slot. */
struct route_snapshot;

/* A new snapshot holding every route of prev (NULL: none), sharing its storage: O(slots / 64).
 * NULL when out of memory. */
struct route_snapshot *route_snapshot_derive(const struct route_snapshot *prev);
/* Puts r in slot (NULL: empties it), taking the caller's reference to r. Returns 0, or -1
 * when out of memory (r released; publish anyway and try again). */
int route_snapshot_put(struct route_snapshot *s, size_t slot, struct route_service *r);
/* Adds a shared-port listener (the Host header names the service). Returns 0 or -1 (OOM). */
int route_snapshot_add_shared(struct route_snapshot *s, const struct addr *addr);
/* Services in the snapshot. */
size_t route_snapshot_services(const struct route_snapshot *s);
struct route_snapshot *route_snapshot_ref(struct route_snapshot *s);
void route_snapshot_unref(struct route_snapshot *s); /* NULL is fine */

/* A listener dataplane_publish could not open. */
struct dataplane_listen_error {
    struct svc_state *svc; /* whose route names it (one reference), NULL: a shared port */
    struct addr addr;
    char why[256]; /* the address and the system's reason */
};

/*
 * Publishes s (takes the caller's reference) to every worker. First, every listener that a
 * route new in s names and no published route did is opened (one socket per address, shared
 * by all workers), synchronously: when this returns the sockets listen, so an address may be
 * written where clients read it (a resolver EndpointSlice) at once. A listener that cannot be
 * opened (taken by another process, not let go yet) is left out of its route and reported in
 * *errors (n_errors of them; caller frees with dataplane_listen_errors_free; NULL and 0 when none):
 * publish again later to retry. Listeners no published route names any more are closed once
 * every worker let go. `cause_ns` (monotonic) is when the change this snapshot carries out was
 * seen, for holdfast_route_update_seconds; 0 unknown. A route new in s must never have been
 * published (build a route anew for each change): the failed listeners are left out of its
 * list in place.
 */
void dataplane_publish(struct dataplane *dp, struct route_snapshot *s, uint64_t cause_ns,
                       struct dataplane_listen_error **errors, size_t *n_errors);
void dataplane_listen_errors_free(struct dataplane_listen_error *errors, size_t n);

/* ---- the wake queue ---- */

enum wake_kind {
    WAKE_NEEDED,         /* a connection is held for this service */
    WAKE_BACKEND_FAILED, /* connecting to `backend` failed: it is not ready after all */
};

/* One message from the workers. */
struct wake_msg {
    struct wake_msg *next;
    enum wake_kind kind;
    struct svc_state *svc; /* one reference, released by wake_msg_free */
    struct addr backend;   /* for WAKE_BACKEND_FAILED */
};

/* ev (on the control thread's base) is made active whenever a worker queues a message; NULL
 * stops notifying. */
void dataplane_wake_notify(struct dataplane *dp, struct event *ev);
/* Takes every queued message, oldest first (NULL: none); free each with wake_msg_free. Wakes
 * are deduplicated per service while queued: taking one lets the next be queued. */
struct wake_msg *dataplane_wakes_take(struct dataplane *dp);
void wake_msg_free(struct wake_msg *m);

#endif
