/*
 * slices: EndpointSlices as holdfast reads and writes them. See slices.h.
 */
#include "controller/slices.h"
#include "common/json.h"
#include "common/strblock.h"
#include "common/strmap.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* FNV-1a of "<a>-<b>": a short, stable hash for names (its bytes must never change). */
static uint32_t names_hash(const char *a, const char *b)
{
    uint32_t h = strmap_hash(STRMAP_SEED, a, strlen(a));
    h = strmap_hash(h, "-", 1);
    return strmap_hash(h, b, strlen(b));
}

/* Drops the '-' a name ends with: Kubernetes names must end with an alphanumeric. */
static void trim_dashes(char *s)
{
    size_t len = strlen(s);
    while (len > 0 && s[len - 1] == '-')
        s[--len] = '\0';
}

void names_fit(char *out, size_t outlen, const char *base, const char *suffix, size_t max)
{
    if (max > K8S_NAME_MAX)
        max = K8S_NAME_MAX;
    if (max + 1 > outlen)
        max = outlen - 1;
    size_t blen = strlen(base), slen = strlen(suffix);
    if (blen + 1 + slen <= max) {
        snprintf(out, outlen, "%s-%s", base, suffix);
        trim_dashes(out); /* an empty suffix, or one ending in '-' */
        return;
    }
    /* "<cut base>-<8 hex>-<suffix>", the suffix cut too if it alone is too long. */
    char hash[9];
    snprintf(hash, sizeof(hash), "%08x", names_hash(base, suffix));
    size_t keep_suffix = slen;
    if (keep_suffix + 10 > max)
        keep_suffix = max > 20 ? max - 20 : 0;
    size_t keep_base = max - 9 - (keep_suffix ? keep_suffix + 1 : 0);
    if (keep_base > blen)
        keep_base = blen;
    while (keep_base > 0 && base[keep_base - 1] == '-')
        keep_base--;
    if (keep_suffix)
        snprintf(out, outlen, "%.*s-%s-%.*s", (int)keep_base, base, hash, (int)keep_suffix, suffix);
    else
        snprintf(out, outlen, "%.*s-%s", (int)keep_base, base, hash);
    trim_dashes(out);
}

static bool ip_is_v6(const char *ip)
{
    return strchr(ip, ':') != NULL;
}

cJSON *slices_resolver_slice(const cJSON *service, const char *address_type,
                             const struct resolver_endpoint *eps, size_t n_eps,
                             const struct slice_port *ports, size_t n_ports)
{
    const char *name = json_str(json_get(service, "metadata"), "name");
    const char *ns = json_str(json_get(service, "metadata"), "namespace");
    const char *uid = json_str(json_get(service, "metadata"), "uid");
    if (!name || !ns || !uid)
        return NULL;
    bool v6 = strcmp(address_type, "IPv6") == 0;
    char slice_name[K8S_NAME_MAX + 1];
    names_fit(slice_name, sizeof(slice_name), name, v6 ? "holdfast-v6" : "holdfast", K8S_NAME_MAX);

    cJSON *s = cJSON_CreateObject();
    cJSON_AddStringToObject(s, "apiVersion", "discovery.k8s.io/v1");
    cJSON_AddStringToObject(s, "kind", "EndpointSlice");
    cJSON *md = cJSON_AddObjectToObject(s, "metadata");
    cJSON_AddStringToObject(md, "name", slice_name);
    cJSON_AddStringToObject(md, "namespace", ns);
    cJSON *labels = cJSON_AddObjectToObject(md, "labels");
    cJSON_AddStringToObject(labels, LABEL_SERVICE_NAME, name);
    cJSON_AddStringToObject(labels, LABEL_MANAGED_BY, SLICES_MANAGED_BY);
    cJSON *owners = cJSON_AddArrayToObject(md, "ownerReferences");
    cJSON *owner = cJSON_CreateObject();
    cJSON_AddStringToObject(owner, "apiVersion", "v1");
    cJSON_AddStringToObject(owner, "kind", "Service");
    cJSON_AddStringToObject(owner, "name", name);
    cJSON_AddStringToObject(owner, "uid", uid);
    cJSON_AddItemToArray(owners, owner);
    cJSON_AddStringToObject(s, "addressType", address_type);

    cJSON *endpoints = cJSON_AddArrayToObject(s, "endpoints");
    for (size_t i = 0; i < n_eps; i++) {
        if (ip_is_v6(eps[i].ip) != v6)
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON *addrs = cJSON_AddArrayToObject(e, "addresses");
        cJSON_AddItemToArray(addrs, cJSON_CreateString(eps[i].ip));
        cJSON *cond = cJSON_AddObjectToObject(e, "conditions");
        cJSON_AddBoolToObject(cond, "ready", 1);
        cJSON_AddBoolToObject(cond, "serving", 1);
        cJSON_AddBoolToObject(cond, "terminating", 0);
        if (eps[i].node_name && *eps[i].node_name)
            cJSON_AddStringToObject(e, "nodeName", eps[i].node_name);
        cJSON_AddItemToArray(endpoints, e);
    }
    cJSON *jports = cJSON_AddArrayToObject(s, "ports");
    for (size_t i = 0; i < n_ports; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", ports[i].name ? ports[i].name : "");
        cJSON_AddStringToObject(p, "protocol", ports[i].protocol ? ports[i].protocol : "TCP");
        cJSON_AddNumberToObject(p, "port", ports[i].resolver_port);
        if (ports[i].app_protocol)
            cJSON_AddStringToObject(p, "appProtocol", ports[i].app_protocol);
        cJSON_AddItemToArray(jports, p);
    }
    return s;
}

static const char *managed_by(const cJSON *slice)
{
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(slice, "metadata"), "labels");
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(labels, LABEL_MANAGED_BY);
    return cJSON_IsString(v) ? v->valuestring : "";
}

bool slices_is_resolver_slice(const cJSON *slice)
{
    return strcmp(managed_by(slice), SLICES_MANAGED_BY) == 0;
}

bool slices_is_controller_slice(const cJSON *slice)
{
    return strcmp(managed_by(slice), SLICES_CONTROLLER_MANAGED_BY) == 0;
}

/* A condition that is absent counts as `absent_means`. */
static bool condition(const cJSON *endpoint, const char *name, bool absent_means)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(endpoint, "conditions"), name);
    if (!c || cJSON_IsNull(c))
        return absent_means;
    return cJSON_IsTrue(c);
}

int slices_ready_endpoints(const cJSON *slice, const char *port_name, struct ready_endpoint **out,
                           size_t *n)
{
    unsigned port = 0;
    bool found = false;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(slice, "ports"))
    {
        const cJSON *pn = cJSON_GetObjectItemCaseSensitive(p, "name");
        const char *name = cJSON_IsString(pn) ? pn->valuestring : "";
        const cJSON *num = cJSON_GetObjectItemCaseSensitive(p, "port");
        if (strcmp(name, port_name) == 0 && cJSON_IsNumber(num)) {
            port = (unsigned)num->valueint;
            found = true;
            break;
        }
    }
    if (!found)
        return 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(slice, "endpoints"))
    {
        if (!condition(e, "ready", true) || condition(e, "terminating", false))
            continue;
        const cJSON *addr = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "addresses"), 0);
        if (!cJSON_IsString(addr) || strlen(addr->valuestring) >= sizeof((*out)->ip))
            continue;
        struct ready_endpoint *grown = realloc(*out, (*n + 1) * sizeof(**out));
        if (!grown)
            return -1;
        *out = grown;
        snprintf(grown[*n].ip, sizeof(grown[*n].ip), "%s", addr->valuestring);
        grown[*n].port = port;
        (*n)++;
    }
    return 0;
}

/* ---- the compact form the controller's cache keeps ---- */

/* The address slices_ready_endpoints would take from endpoint e, or NULL. */
static const char *ready_address(const cJSON *e)
{
    if (!condition(e, "ready", true) || condition(e, "terminating", false))
        return NULL;
    const cJSON *addr = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(e, "addresses"), 0);
    if (!cJSON_IsString(addr) ||
        strlen(addr->valuestring) >= sizeof(((struct ready_endpoint *)0)->ip))
        return NULL;
    return addr->valuestring;
}

struct slice_cached *slices_decode(const cJSON *slice, char *err, size_t errlen)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(slice, "metadata");
    const char *name = json_str(md, "name"), *ns = json_str(md, "namespace");
    if (!name || !ns) {
        snprintf(err, errlen, "EndpointSlice %s/%s: metadata.%s is not a string", ns ? ns : "?",
                 name ? name : "?", name ? "namespace" : "name");
        return NULL;
    }
    const char *uid = json_str(md, "uid"), *rv = json_str(md, "resourceVersion");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(md, "labels");
    const char *service = json_str(labels, LABEL_SERVICE_NAME);
    const cJSON *ports = cJSON_GetObjectItemCaseSensitive(slice, "ports");
    const cJSON *endpoints = cJSON_GetObjectItemCaseSensitive(slice, "endpoints");
    /* the sizes first: one block holds the struct, its arrays and its strings */
    size_t n_ports = 0, n_ready = 0, strings = 0;
    const char *const texts[] = {name, ns, uid, rv, service};
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
        strings += strblock_size(texts[i]);
    const cJSON *p, *e;
    cJSON_ArrayForEach(p, ports)
    {
        if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(p, "port"))) {
            const char *pn = json_str(p, "name");
            strings += (pn ? strlen(pn) : 0) + 1;
            n_ports++;
        }
    }
    cJSON_ArrayForEach(e, endpoints)
    {
        const char *a = ready_address(e);
        if (a) {
            strings += strlen(a) + 1;
            n_ready++;
        }
    }
    size_t size = sizeof(struct slice_cached) + n_ports * sizeof(struct slice_cached_port) +
                  n_ready * sizeof(char *) + strings;
    struct slice_cached *s = calloc(1, size);
    if (!s) {
        snprintf(err, errlen, "EndpointSlice %s/%s: out of memory", ns, name);
        return NULL;
    }
    struct slice_cached_port *sp = (struct slice_cached_port *)(s + 1);
    const char **ready = (const char **)(sp + n_ports);
    char *at = (char *)(ready + n_ready); /* the strings, copied by strblock_copy */
    s->name = strblock_copy(&at, name);
    s->ns = strblock_copy(&at, ns);
    s->uid = strblock_copy(&at, uid);
    s->resource_version = strblock_copy(&at, rv);
    s->service = strblock_copy(&at, service);
    s->manager = slices_is_resolver_slice(slice)     ? SLICE_HOLDFAST
                 : slices_is_controller_slice(slice) ? SLICE_CONTROLLER
                                                     : SLICE_OTHER;
    cJSON_ArrayForEach(p, ports)
    {
        const cJSON *num = cJSON_GetObjectItemCaseSensitive(p, "port");
        if (cJSON_IsNumber(num)) {
            const char *pn = json_str(p, "name");
            sp[s->n_ports].name = strblock_copy(&at, pn ? pn : "");
            sp[s->n_ports].port = (unsigned)num->valueint;
            s->n_ports++;
        }
    }
    cJSON_ArrayForEach(e, endpoints)
    {
        const char *a = ready_address(e);
        if (a)
            ready[s->n_ready++] = strblock_copy(&at, a);
    }
    s->ports = sp;
    s->ready = ready;
    if (s->manager == SLICE_HOLDFAST) {
        s->endpoints = cJSON_Duplicate(endpoints, 1);
        s->ports_json = cJSON_Duplicate(ports, 1);
        if ((endpoints && !s->endpoints) || (ports && !s->ports_json)) {
            slices_cached_free(s);
            snprintf(err, errlen, "EndpointSlice %s/%s: out of memory", ns, name);
            return NULL;
        }
    }
    return s;
}

void slices_cached_free(struct slice_cached *s)
{
    if (!s)
        return;
    cJSON_Delete(s->endpoints);
    cJSON_Delete(s->ports_json);
    free(s);
}

int slices_cached_ready_endpoints(const struct slice_cached *s, const char *port_name,
                                  struct ready_endpoint **out, size_t *n)
{
    const struct slice_cached_port *port = NULL;
    for (size_t i = 0; i < s->n_ports && !port; i++)
        if (strcmp(s->ports[i].name, port_name) == 0)
            port = &s->ports[i];
    if (!port || !s->n_ready)
        return 0;
    struct ready_endpoint *grown = realloc(*out, (*n + s->n_ready) * sizeof(**out));
    if (!grown)
        return -1;
    *out = grown;
    for (size_t i = 0; i < s->n_ready; i++) {
        snprintf(grown[*n].ip, sizeof(grown[*n].ip), "%s", s->ready[i]);
        grown[*n].port = port->port;
        (*n)++;
    }
    return 0;
}
