/*
 * slices: the EndpointSlices holdfast reads and writes, as JSON objects (cJSON).
 *
 * Reading: a Service's own slices (managed by the EndpointSlice controller) say which pods are
 * ready for each Service port; holdfast forwards held connections straight to them.
 *
 * Writing: while a service is at zero, holdfast's "resolver slice" for it steers the Service's
 * traffic to the resolver pods: labels `kubernetes.io/service-name` and
 * `endpointslice.kubernetes.io/managed-by: holdfast`, a name starting with "<service>-", an
 * ownerReference to the Service, every Service port's exact name and protocol with the resolver
 * port allocated for it, one endpoint per resolver pod with ready/serving/terminating written
 * explicitly and its nodeName, no targetRef. This is what kube-proxy, the EndpointSlice
 * controller and ingress controllers need to see (DESIGN.md, "Traffic model").
 */
#ifndef HOLDFAST_SLICES_H
#define HOLDFAST_SLICES_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define SLICES_MANAGED_BY "holdfast"
#define SLICES_CONTROLLER_MANAGED_BY "endpointslice-controller.k8s.io"
#define LABEL_SERVICE_NAME "kubernetes.io/service-name"
#define LABEL_MANAGED_BY "endpointslice.kubernetes.io/managed-by"
#define K8S_NAME_MAX 63

/*
 * Writes into out a name made of `base` and `suffix` ("<base>-<suffix>") that fits `max`
 * characters (at most K8S_NAME_MAX): when too long, base is cut and a short hash of the whole
 * name keeps it unique ("averylongservicen-1a2b3c4d-suffix"). The result never ends with '-'.
 */
void names_fit(char *out, size_t outlen, const char *base, const char *suffix, size_t max);

/* One resolver pod as the slice lists it. */
struct resolver_endpoint {
    const char *ip;        /* pod IP, IPv4 or IPv6 */
    const char *node_name; /* the pod's node, or NULL */
};

/* A Service port and the resolver port allocated for it. */
struct slice_port {
    const char *name;         /* the Service port's exact name ("" for a single unnamed port) */
    const char *protocol;     /* "TCP" (default), "UDP", "SCTP" */
    const char *app_protocol; /* the Service port's appProtocol, or NULL */
    unsigned resolver_port;
};

/*
 * Builds the resolver slice of `service` (a v1 Service object: its name, namespace and uid are
 * read) for one address family ("IPv4" or "IPv6"), listing the endpoints of that family.
 * Returns a new object (caller deletes), or NULL when the service lacks a name or uid.
 */
cJSON *slices_resolver_slice(const cJSON *service, const char *address_type,
                             const struct resolver_endpoint *eps, size_t n_eps,
                             const struct slice_port *ports, size_t n_ports);

/* True when `slice` is one of holdfast's resolver slices. */
bool slices_is_resolver_slice(const cJSON *slice);

/* True when `slice` is one the EndpointSlice controller manages for a Service. */
bool slices_is_controller_slice(const cJSON *slice);

/* A ready endpoint of one Service port. */
struct ready_endpoint {
    char ip[64];
    unsigned port;
};

/*
 * Appends to *out (a malloc'd array the caller frees; *n its count) the endpoints of `slice`
 * that serve the Service port named `port_name` and are ready: `conditions.ready` true or
 * absent (the API says absent means ready) and `terminating` not true. Returns 0, or -1 when
 * out of memory.
 */
int slices_ready_endpoints(const cJSON *slice, const char *port_name, struct ready_endpoint **out,
                           size_t *n);

/* Who manages an EndpointSlice (label endpointslice.kubernetes.io/managed-by). */
enum slice_manager {
    SLICE_OTHER,      /* anyone else, or no label */
    SLICE_CONTROLLER, /* the EndpointSlice controller: a Service's own slice */
    SLICE_HOLDFAST,   /* holdfast: a resolver slice */
};

/* A numbered port of a slice. */
struct slice_cached_port {
    const char *name; /* "" when unnamed */
    unsigned port;
};

/*
 * An EndpointSlice as the controller's cache keeps it: exactly what holdfast reads of it, in one
 * allocation (its cJSON tree, lean, took ~2.1 KB; this ~190 bytes, `route_bench --cache-bytes`).
 * What reads what: the informer (name, namespace, uid, resourceVersion), controller.c's index of
 * slices by Service and its Service events (namespace, name, service), the routes and the serve
 * switch (manager, ports, ready: as slices_ready_endpoints reads the object), the resolver slices'
 * upkeep (name, resourceVersion, and the endpoints and ports whole, compared whole with what
 * holdfast would write). Nothing of it is ever written back: a resolver slice is built afresh,
 * and rewritten from a fresh read.
 */
struct slice_cached {
    const char *ns, *name;
    const char *uid, *resource_version; /* or NULL when the object had none */
    const char *service;                /* label kubernetes.io/service-name, or NULL */
    enum slice_manager manager;
    /* The ports that have a number (`port`), in order: the first of a name is the one
     * slices_ready_endpoints takes. */
    const struct slice_cached_port *ports;
    size_t n_ports;
    /* The first address of each endpoint that is ready (conditions.ready true or absent) and not
     * terminating, when it is a string shorter than ready_endpoint.ip, in order. */
    const char *const *ready;
    size_t n_ready;
    /* A resolver slice's endpoints and ports, whole (owned); NULL for any other slice. */
    cJSON *endpoints, *ports_json;
};

/*
 * Decodes `slice` (borrowed) into a new slice_cached (free with slices_cached_free). NULL with a
 * message in err naming the slice when it has no metadata.name or metadata.namespace, or when
 * out of memory. Anything else the API would not send (a port without a number, an endpoint
 * without a string address, fields of the wrong type) reads as slices_ready_endpoints reads it.
 */
struct slice_cached *slices_decode(const cJSON *slice, char *err, size_t errlen);

void slices_cached_free(struct slice_cached *s);

/* slices_ready_endpoints over a decoded slice: the same endpoints, in the same order. */
int slices_cached_ready_endpoints(const struct slice_cached *s, const char *port_name,
                                  struct ready_endpoint **out, size_t *n);

#endif
