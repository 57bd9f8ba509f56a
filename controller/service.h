/*
 * service: a Service as the controller's cache keeps it (controller.c's Services informer, a
 * compact cache: controller/informer.h). Exactly what holdfast reads of a Service, in one
 * allocation: its cJSON tree, lean, took ~1.4 KB; this ~180 bytes (`route_bench --cache-bytes`).
 *
 * Who reads what: the informer (name, namespace, uid, resourceVersion); the resolver slices'
 * owner (name, namespace, uid); the check for Services holdfast refuses (type, clusterIP); the
 * data-path probe (clusterIP, ports); status.ports and the routes (ports: name, number,
 * protocol, appProtocol); early readiness (targetPort). Nothing of it is ever written back.
 */
#ifndef HOLDFAST_SERVICE_H
#define HOLDFAST_SERVICE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* One member of spec.ports, as it was: a field that is absent or not a string is NULL. */
struct service_port {
    const char *name;
    const char *protocol;
    const char *app_protocol;
    bool has_port; /* `port` is a number */
    unsigned port; /* (unsigned) its valueint, when has_port */
    /* targetPort: a number (target_port, 0 when absent or a name) or a container port's name
     * (target_port_name, NULL otherwise): where early readiness sends to a pod (early.c) */
    unsigned target_port;
    const char *target_port_name;
};

struct service_cached {
    const char *ns, *name;
    const char *uid, *resource_version; /* or NULL when the object had none */
    const char *type, *cluster_ip;      /* spec.type, spec.clusterIP, or NULL */
    /* spec.ports is an array (not: the controller keeps the resolver ports it allocated) */
    bool ports_is_array;
    /* Every member of spec.ports in order, as cJSON_ArrayForEach walks it (a member that is not
     * an object has every field NULL). */
    const struct service_port *ports;
    size_t n_ports;
};

/*
 * Decodes `service` (borrowed) into a new service_cached (free with service_cached_free). NULL
 * with a message in err naming the Service when it has no metadata.name or metadata.namespace,
 * or when out of memory.
 */
struct service_cached *service_decode(const cJSON *service, char *err, size_t errlen);

void service_cached_free(struct service_cached *s);

#endif
