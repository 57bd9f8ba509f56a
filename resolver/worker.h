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

#include "common/strmap.h"
#include "resolver/dataplane.h"
#include "resolver/route.h"
#include "resolver/wakeq.h"

struct worker;

struct dataplane {
    struct config_limits limits;
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
