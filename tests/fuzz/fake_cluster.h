/*
 * fake_cluster: the control plane over fake_http, fed N synthetic ElastiServices without an
 * API server, for bench/route and the controller's route tests.
 *
 * ElastiService i is `bench/svc-<i>`: mode proxy, one port "http" (80) whose resolver port
 * (port_base + i) is already in status; its Service has that port, and its one EndpointSlice
 * (managed by the EndpointSlice controller) starts with no ready endpoint. The replica never
 * leads (leader election on, the Lease read never answered), so it only watches and publishes
 * routes, as every replica does. Listeners are real sockets on `bind`.
 *
 * Thread model: the caller's thread runs the control loop (the event_base it passes); the
 * data plane's workers run their own threads.
 */
#ifndef HOLDFAST_FAKE_CLUSTER_H
#define HOLDFAST_FAKE_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct dataplane;
struct controller;
struct fake_cluster;
struct cJSON;

/*
 * Starts the controller on base for dp (started by the caller), answers the informers' lists
 * with `count` ElastiServices, Services and EndpointSlices, and runs the loop until the routes
 * are published and every worker applied them. NULL with a message in err on failure.
 */
struct fake_cluster *fake_cluster_start(struct event_base *base, struct dataplane *dp, int count,
                                        const char *bind, unsigned port_base, char *err,
                                        size_t errlen);

/*
 * As fake_cluster_start, but the replica leads at once (leader election off) and ElastiService
 * i is in serve mode with no ports in its status yet: its target's /scale reads are left
 * pending for the caller to answer (a 0 is a scale to zero by hand).
 */
struct fake_cluster *fake_cluster_start_leading(struct event_base *base, struct dataplane *dp,
                                                int count, const char *bind, unsigned port_base,
                                                char *err, size_t errlen);

/* fake_cluster_start_api's cluster. */
struct fake_cluster_api_opts {
    int count;      /* Services (with one EndpointSlice each) and Deployments, 1 to 16 */
    bool es_listed; /* ElastiService i exists at the start, in proxy mode (its resolver port in
                     * status, its finalizer set); false: none until fake_cluster_create_es */
    int replicas;   /* every Deployment's spec.replicas */
    unsigned polling_interval_ms; /* 0: an hour (no poll but the first) */
};

/*
 * A small API server for counting the controller's calls: the replica leads at once, watches
 * the targets (Deployments, and StatefulSets: none), and every plain request (not a watch) is
 * left pending until fake_cluster_serve answers it as an API server holding these objects
 * would: ElastiService patches (main resource and status, merge patches applied), the
 * Deployments' /scale (read, and patched with or without a resourceVersion precondition: 409
 * when stale), EndpointSlices holdfast creates, updates, reads and deletes, and Events. Each
 * write's watch event follows its answer, as the API server's does. Anything else is 404.
 */
struct fake_cluster *fake_cluster_start_api(struct event_base *base, struct dataplane *dp,
                                            const struct fake_cluster_api_opts *o, const char *bind,
                                            unsigned port_base, char *err, size_t errlen);

/* Answers every pending plain request (and those their answers lead to) until none is left,
 * running the loop in between; returns how many it answered. */
int fake_cluster_serve(struct fake_cluster *fc);

/* Sends ADDED of ElastiService i as kubectl creates it (generation 1, no status, no finalizer)
 * through the watch (fake_cluster_start_api). */
void fake_cluster_create_es(struct fake_cluster *fc, int i);

/* ElastiService i as the fake API server stores it, or NULL (fake_cluster_start_api). */
const struct cJSON *fake_cluster_api_es(const struct fake_cluster *fc, int i);

/* Deployment i's spec.replicas as the fake API server stores it (fake_cluster_start_api). */
int fake_cluster_api_replicas(const struct fake_cluster *fc, int i);

/* Sets Deployment i's spec.replicas (a new resourceVersion), as a hand would; the watch event
 * follows only when `event` (without it, the controller's cache is left behind). */
void fake_cluster_api_set_replicas(struct fake_cluster *fc, int i, int replicas, bool event);

/* Resolver EndpointSlices the fake API server stores (fake_cluster_start_api). */
int fake_cluster_api_slices(const struct fake_cluster *fc);

struct controller *fake_cluster_controller(const struct fake_cluster *fc);

/* Sends a MODIFIED event of service i's EndpointSlice (a ready endpoint, or none) through the
 * watch; the informer and the controller's handlers run before this returns (the publish is
 * scheduled on the loop). */
void fake_cluster_set_ready(struct fake_cluster *fc, int i, bool ready);

/* Sends a MODIFIED event of service i's Service, its port renamed to `port_name`. */
void fake_cluster_set_port_name(struct fake_cluster *fc, int i, const char *port_name);

/* Sends a DELETED event of ElastiService i through the watch. */
void fake_cluster_delete_es(struct fake_cluster *fc, int i);

/* Runs the control loop until nothing is active (bounded). */
void fake_cluster_settle(struct fake_cluster *fc);

/* The published generation of the route table. */
unsigned long long fake_cluster_generation(struct dataplane *dp);

/* True once every worker of dp applied generation gen. */
bool fake_cluster_applied(struct dataplane *dp, unsigned long long gen);

/* Objects as an API server sends them (for the fake_cluster_start calls that follow, process
 * wide): managedFields, kubectl's last-applied-configuration, labels, a Service's selector and
 * status, an EndpointSlice's owner and its endpoints' targetRef and zone. Off: only what
 * holdfast reads. */
void fake_cluster_full_objects(bool on);

/* The JSON text (malloc'd) of synthetic object i of `resource` ("elastiservices": in proxy mode;
 * "services"; "endpointslices": one ready endpoint), as the lists carry it, or NULL. */
char *fake_cluster_object_json(const char *resource, int i);

/* Sends a MODIFIED event of ElastiService i (a new resourceVersion) with metadata.generation
 * `generation` and spec.cooldownPeriod `cooldown_s` (the lists carry generation 1 and 300). */
void fake_cluster_modify_es(struct fake_cluster *fc, int i, long generation, unsigned cooldown_s);

/* The value of the controller's unlabelled metric `name`, or -1 when it does not report it. */
double fake_cluster_metric(const struct fake_cluster *fc, const char *name);

/* The controller's holdfast_route_services_built_total, or -1 when it does not report it. */
double fake_cluster_services_built(const struct fake_cluster *fc);

/* Fails the API calls still in flight (as with the API server gone), frees the controller and
 * every request. The data plane is the caller's. */
void fake_cluster_free(struct fake_cluster *fc);

#endif
