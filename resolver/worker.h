/*
 * worker: the data plane's threads. Each worker owns one event_base, its own listening socket
 * for every listener address (SO_REUSEPORT, so the kernel spreads connections), and the
 * connections it accepted. Workers learn about services only from route snapshots and report
 * only through the wake queue: they never wait on the control plane.
 *
 * struct dataplane gathers what the workers share: limits, the route table, the service
 * registry, the wake queue and process-wide counters.
 */
#ifndef HOLDFAST_WORKER_H
#define HOLDFAST_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "common/strmap.h"
#include "resolver/dataplane.h"
#include "resolver/route.h"
#include "resolver/wakeq.h"

struct event;
struct event_base;
struct conn;

struct dataplane {
    struct dp_limits limits;
    int nworkers;
    struct worker **workers;
    struct route_table routes;
    struct svc_registry registry;
    struct wakeq wakeq;

    /* Process-wide accounting against limits.max_held_*. */
    _Atomic long held_conns;
    _Atomic long held_bytes;

    /* Process-wide metrics. */
    _Atomic uint64_t accepted;         /* connections accepted */
    _Atomic long open_conns;           /* connections open now */
    _Atomic uint64_t fd_exhausted;     /* accept() failed for lack of file descriptors */
    _Atomic uint64_t unknown_host;     /* shared port: Host names no known service (404) */
    _Atomic uint64_t bad_requests;     /* 400/408/431 before a service was known */
    _Atomic uint64_t listen_errors;    /* a worker could not open a listener */
    _Atomic uint64_t regex_limit_hits; /* requests whose probe matching gave up (work budget
                                          or a PCRE2 limit; holdfast_probe_regex_limit_total) */
    _Atomic uint64_t datapath_probes;  /* Holdfast-Probe requests answered (never forwarded,
                                          held or counted as requests) */
    struct hist route_update_seconds;  /* a change's snapshot applied by a worker, from the
                                          change (holdfast_route_update_seconds) */

    _Atomic bool draining; /* SIGTERM: listeners closed, finishing connections */
    _Atomic bool stopping; /* SIGTERM: /readyz fails; listeners may still accept (shutdown delay) */

    /* Listening sockets by address text (struct dp_sock), opened by the control plane
     * (dataplane_listen); every worker accepts on the same socket once its snapshot lists the
     * address. One socket per address, not one per worker: 10,000 resolver ports stay 10,000
     * descriptors whatever the number of workers. */
    pthread_mutex_t listen_mu;
    struct strmap listens;
    /* Address -> how many routes of the published snapshot name it (dataplane_publish; the
     * control thread only): the last to let go calls dataplane_unlisten. */
    struct strmap listen_routes;
};

/* A listening socket, closed when the table and every worker using it let go. */
struct dp_sock {
    int fd;
    _Atomic int refs;
};

/* A worker's own listening socket for one listener address. */
struct wlistener {
    struct addr addr;
    struct dp_sock *sock; /* one reference; the socket is shared by every worker */
    struct event *ev;
    struct worker *w;
    const struct route_listener *route; /* in w->snap (a service's, or a shared one); moved
                                           when a snapshot changes its service */
};

struct worker {
    int id;
    struct dataplane *dp;
    struct event_base *base;
    pthread_t thread;
    struct event *snapshot_ev;   /* made active by route_table_publish */
    struct event *control_ev;    /* made active by dataplane_drain/stop */
    _Atomic int control;         /* WORKER_DRAIN | WORKER_STOP requests */
    struct route_snapshot *snap; /* the snapshot this worker runs on (one reference) */
    struct strmap listens;       /* address text -> struct wlistener (each allocated alone: its
                                    event's argument stays put), kept across snapshots */
    /* Services whose held connections may be ready (their route changed), not yet gone
     * through by conn_dispatch_held; one reference each. */
    struct svc_state **dispatch;
    size_t n_dispatch, cap_dispatch;
    /* Services with held connections waiting for a pacing slot (pace.h), looked at again when
     * pace_ev fires (a window that stalls grows); one reference each. */
    struct svc_state **pace_wait;
    size_t n_pace_wait, cap_pace_wait;
    struct event *pace_ev;
    char *scratch; /* relay read buffer, one per worker */
    size_t scratch_len;
    long nconns;
    TAILQ_HEAD(conn_list, conn) conns; /* every open connection, for stop */
    /* Connections closed during this loop turn, freed by reap_ev once the handlers that
     * closed them have returned (conn_reap): a connection is never freed under a caller. */
    TAILQ_HEAD(conn_closing, conn) closing;
    struct event *reap_ev;
    bool draining;
    bool accept_paused;             /* out of file descriptors: listeners disabled */
    bool fd_exhausted;              /* in an EMFILE episode, until an accept succeeds */
    struct event *accept_resume_ev; /* retries accept while paused */
    struct event *dispatch_ev;      /* continues dispatching held connections next loop turn */
    _Atomic uint64_t applied_generation;
};

enum {
    WORKER_DRAIN = 1,
    WORKER_STOP = 2,
};

/* Called by conn when a connection closes, so the worker can resume accepting. */
void worker_conn_closed(struct worker *w);

/*
 * Opens addr for the workers: one listening socket that every worker accepts on (the worker
 * that wins each accept takes the connection; each drains up to a batch per wake-up). Call
 * from the control plane before publishing a snapshot that lists the address: a taken address
 * is found here, synchronously, not in a worker. Opening an address that is already open is a
 * no-op; while draining nothing is opened. Returns 0, or -1 with a message in err.
 */
int dataplane_listen(struct dataplane *dp, const struct addr *addr, char *err, size_t errlen);

/* Forgets addr: the socket closes once no worker uses it either (a worker lets go when its
 * snapshot no longer lists the address). Call after publishing a snapshot without it; call
 * dataplane_listen again before listing it anew. */
void dataplane_unlisten(struct dataplane *dp, const struct addr *addr);

#endif
