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

#endif
