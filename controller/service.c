/*
 * service: a Service as the controller's cache keeps it. See service.h.
 */
#include "controller/service.h"
#include "common/json.h"
#include "common/strblock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct service_cached *service_decode(const cJSON *service, char *err, size_t errlen)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(service, "metadata");
    const char *name = json_str(md, "name"), *ns = json_str(md, "namespace");
    if (!name || !ns) {
        snprintf(err, errlen, "Service %s/%s: metadata.%s is not a string", ns ? ns : "?",
                 name ? name : "?", name ? "namespace" : "name");
        return NULL;
    }
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(service, "spec");
    const cJSON *ports = cJSON_GetObjectItemCaseSensitive(spec, "ports");
    const char *uid = json_str(md, "uid"), *rv = json_str(md, "resourceVersion");
    const char *type = json_str(spec, "type"), *cip = json_str(spec, "clusterIP");
    size_t n_ports = 0;
    size_t strings = strblock_size(name) + strblock_size(ns) + strblock_size(uid) +
                     strblock_size(rv) + strblock_size(type) + strblock_size(cip);
    const cJSON *p;
    cJSON_ArrayForEach(p, ports)
    {
        strings += strblock_size(json_str(p, "name")) + strblock_size(json_str(p, "protocol")) +
                   strblock_size(json_str(p, "appProtocol")) +
                   strblock_size(json_str(p, "targetPort"));
        n_ports++;
    }
    struct service_cached *s =
        calloc(1, sizeof(*s) + n_ports * sizeof(struct service_port) + strings);
    if (!s) {
        snprintf(err, errlen, "Service %s/%s: out of memory", ns, name);
        return NULL;
    }
    struct service_port *sp = (struct service_port *)(s + 1);
    char *at = (char *)(sp + n_ports);
    s->name = strblock_copy(&at, name);
    s->ns = strblock_copy(&at, ns);
    s->uid = strblock_copy(&at, uid);
    s->resource_version = strblock_copy(&at, rv);
    s->type = strblock_copy(&at, type);
    s->cluster_ip = strblock_copy(&at, cip);
    s->ports_is_array = cJSON_IsArray(ports);
    cJSON_ArrayForEach(p, ports)
    {
        struct service_port *q = &sp[s->n_ports++];
        q->name = strblock_copy(&at, json_str(p, "name"));
        q->protocol = strblock_copy(&at, json_str(p, "protocol"));
        q->app_protocol = strblock_copy(&at, json_str(p, "appProtocol"));
        const cJSON *num = cJSON_GetObjectItemCaseSensitive(p, "port");
        q->has_port = cJSON_IsNumber(num);
        q->port = q->has_port ? (unsigned)num->valueint : 0;
        const cJSON *tp = cJSON_GetObjectItemCaseSensitive(p, "targetPort");
        q->target_port = cJSON_IsNumber(tp) && tp->valueint > 0 && tp->valueint < 65536
                             ? (unsigned)tp->valueint
                             : 0;
        q->target_port_name = strblock_copy(&at, json_str(p, "targetPort"));
    }
    s->ports = sp;
    return s;
}

void service_cached_free(struct service_cached *s)
{
    free(s);
}
