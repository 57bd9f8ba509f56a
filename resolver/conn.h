/*
 * conn: one client connection's life, from accept to close, and the worker structure it
 * lives in. The whole data path is in conn.c, readable top to bottom:
 *
 *   accept -> HEAD (parse the request head) -> probe answer | HELD -> CONNECTING -> RELAY
 *
 * with BACKOFF between connect attempts and ANSWER/LINGER for holdfast's own answers.
 */
#ifndef HOLDFAST_CONN_H
#define HOLDFAST_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "resolver/route.h"
#include "resolver/worker.h"

struct event;
struct conn;

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

/* Takes an accepted, non-blocking socket of listener l and starts its life. */
void conn_accept(struct worker *w, int fd, const struct route_listener *l);

/* The worker switched snapshots, and these slots changed: answer the held connections of
 * services that disappeared, and dispatch those of services that became ready. Called after
 * every svc_worker.route is set. O(changes), not O(services). */
void conn_snapshot_applied(struct worker *w, const struct route_change *changes, size_t n);

/* Dispatches the ready held connections of the services in w->dispatch, a batch per loop turn
 * (continued by w->dispatch_ev). */
void conn_dispatch_held(struct worker *w);

/* Frees the connections closed since the last call (w->reap_ev's callback). */
void conn_reap(struct worker *w);

/* Closes and frees every connection of the worker at once (stop). */
void conn_close_all(struct worker *w);

/* Called by conn when a connection closes, so the worker can resume accepting. */
void worker_conn_closed(struct worker *w);

/* Monotonic clock, nanoseconds. */
uint64_t now_ns(void);

#endif
