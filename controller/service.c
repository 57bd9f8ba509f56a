/*
 * service: a Service as the controller's cache keeps it. See service.h.
 */
#include "controller/service.h"
#include "common/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies s into the block at *at (bump allocation), or NULL for NULL. */
static const char *block_str(char **at, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*at, s, n);
    const char *out = *at;
    *at += n;
    return out;
}

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
    size_t strings = str_size(name) + str_size(ns) + str_size(uid) + str_size(rv) + str_size(type) +
                     str_size(cip);
    const cJSON *p;
    cJSON_ArrayForEach(p, ports)
    {
        strings += str_size(json_str(p, "name")) + str_size(json_str(p, "protocol")) +
                   str_size(json_str(p, "appProtocol"));
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
    s->name = block_str(&at, name);
    s->ns = block_str(&at, ns);
    s->uid = block_str(&at, uid);
    s->resource_version = block_str(&at, rv);
    s->type = block_str(&at, type);
    s->cluster_ip = block_str(&at, cip);
    s->ports_is_array = cJSON_IsArray(ports);
    cJSON_ArrayForEach(p, ports)
    {
        struct service_port *q = &sp[s->n_ports++];
        q->name = block_str(&at, json_str(p, "name"));
        q->protocol = block_str(&at, json_str(p, "protocol"));
        q->app_protocol = block_str(&at, json_str(p, "appProtocol"));
        const cJSON *num = cJSON_GetObjectItemCaseSensitive(p, "port");
        q->has_port = cJSON_IsNumber(num);
        q->port = q->has_port ? (unsigned)num->valueint : 0;
    }
    s->ports = sp;
    return s;
}

void service_cached_free(struct service_cached *s)
{
    free(s);
}
