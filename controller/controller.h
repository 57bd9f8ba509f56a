/*
 * controller: the Kubernetes control plane. One thread (the control thread's event_base)
 * watches ElastiServices, their Services and EndpointSlices, and the resolver's own
 * EndpointSlices; publishes route snapshots to the data plane; consumes the wake queue; and
 * (as leader) scales targets to zero and switches traffic.
 *
 * How an ElastiService moves (DESIGN.md, "Control plane contract"):
 *
 *   serve --(triggers below threshold past the cooldown, in the enabled period, Prometheus
 *            healthy; or the target scaled to 0 by hand)--> proxy
 *       ports allocated and written to status, resolver EndpointSlice(s) created, KEDA paused,
 *       target scaled to 0, status.mode=proxy, Event ScaledToZero
 *   proxy --(a held request: any replica)--> waking
 *       target /scale patched to minTargetReplicas when at 0, KEDA resumed,
 *       status.lastScaledUpTime, Event ScaledUp
 *   proxy/waking --(the target Service has a ready endpoint: leader)--> serve
 *       resolver slices deleted, status.mode=serve
 *
 * Every replica listens on every allocated resolver port (from status.ports), so traffic that
 * still reaches a resolver after the switch is relayed.
 */
#ifndef HOLDFAST_CONTROLLER_H
#define HOLDFAST_CONTROLLER_H

#include <stdbool.h>
#include <stddef.h>

#include "common/addr.h"
#include "common/metrics.h"
#include "resolver/dataplane.h"

struct event_base;
struct controller;

struct controller_opts {
    const char *kubeconfig;         /* file, or NULL for in-cluster configuration */
    const char *namespace_;         /* watch only this namespace, or NULL for all */
    const char *resolver_service;   /* the resolver's own Service (its slices list the
                                       resolver pods), or NULL: this process alone */
    const char *resolver_namespace; /* namespace of resolver_service */
    const char *pod_name;           /* this replica's name (leader identity, Events) */
    const char *pod_ip;             /* this replica's IP, used when resolver_service is NULL */
    const char *node_name;          /* this replica's node, or NULL */
    const char *bind_address;       /* IP every resolver port binds */
    unsigned port_min, port_max;    /* resolver port range, inclusive */
    unsigned shared_port;           /* Host-routed shared port on bind_address, 0 = none */
    unsigned polling_interval_ms;   /* scale-down checks (default 30000, jittered) */
    double api_qps;                 /* API client rate limit, requests/s (0: default 20) */
    int api_burst;                  /* and its burst (0: default 30) */
    const char *prometheus_address; /* default trigger serverAddress, or NULL */
    const char *prometheus_authorization; /* default trigger Authorization header, or NULL */
    unsigned prometheus_max_inflight;     /* queries in flight to one Prometheus server at a
                                             time (0: PROM_DEFAULT_MAX_INFLIGHT, 8) */
    bool leader_elect;                    /* false: this replica always leads */
    const char *lease_name;               /* default "holdfast-leader" */
    const char *lease_namespace;          /* default: resolver_namespace, else "default" */
    bool insecure_skip_tls_verify;        /* only when the user said so; logged at every start */
    long api_timeout_ms;                  /* deadline of every API call (0: default 30 s) */
    unsigned status_heartbeat_s;          /* refresh status.lastReconciledTime when it is older
                                             (0: max(5 min, 10 polling intervals, paced)) */
    unsigned liveness_bound_ms;           /* /healthz fails when no evaluation round completed
                                             for this long (0: derived, see controller_health) */
    bool no_target_watch; /* do not watch Deployments, StatefulSets and Rollouts: hand scaling
                             is then seen only by the polls (within one polling interval) */
    unsigned scale_down_probe_timeout_ms; /* the switch to zero gives up when the data path is
                                             not shown to reach holdfast by then (0: 30 s) */
    unsigned scale_down_grace_ms;         /* Services with no HTTP port: wait this long after the
                                             resolver slice is cached (the flag's default: 5 s) */
};

/* Starts watching and publishing. Returns NULL with a message in err (bad kubeconfig...). */
struct controller *controller_start(struct event_base *base, struct dataplane *dp,
                                    const struct controller_opts *opts, char *err, size_t errlen);

/*
 * True once every informer has synced and a route snapshot built from them was published: a
 * replica that is Ready before that would be sent traffic for resolver ports it does not
 * listen on yet (a rolling update, a restart). Control thread only (the admin endpoint).
 */
bool controller_ready(void *controller);

/*
 * Liveness, for /healthz: true while evaluation rounds complete (every ElastiService evaluated
 * at least once per round) within the bound; otherwise false with what is stuck, and on which
 * object, in why. Control thread only (the admin endpoint).
 */
bool controller_health(void *controller, char *why, size_t len);

/* Metric families of the controller (reconciles, Prometheus errors, leader status). */
void controller_metrics(struct mtext *out, void *controller);

/* Shutdown begins (SIGTERM): hand the leader Lease back now, so another replica takes over
 * at once; wakes go on while connections drain. */
void controller_stop_leading(struct controller *c, void (*done)(bool released, void *arg),
                             void *arg);

/* No API call (status or slice write, target read, wake) is queued or in flight: a drain waits
 * for this, so writes decided before the signal are made, and none is dropped at exit. */
bool controller_idle(const struct controller *c);

/* The object an informer caches: `resource` "elastiservices", a cJSON object as its transform
 * left it (controller/lean.h); "services", a struct service_cached (controller/service.h);
 * "endpointslices", a struct slice_cached (controller/slices.h). Borrowed (until control
 * returns to the loop), or NULL. For tests. */
const void *controller_cached(const struct controller *c, const char *resource, const char *ns,
                              const char *name);

/* Stops everything and frees. */
void controller_free(struct controller *c);

#endif
