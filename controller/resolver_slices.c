/*
 * resolver_slices: the EndpointSlices holdfast writes for a Service in proxy mode (and while a
 * switch to zero waits for the data path). They list the resolver pods (every replica, from
 * the resolver Service's own slices) at the resolver ports allocated for the ElastiService, so
 * kube-proxy sends the Service's traffic to holdfast. Written by the leader from what the
 * informer caches (a create, or an update when it differs), rewritten at once when the cache
 * was behind (AlreadyExists, Conflict), deleted in serve mode. Also status.ports (es_ports_json)
 * and the port allocation that feeds both (es_allocate_ports, through controller/ports.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/es.h"

/* ---- resolver slices ---- */

/* Allocates a resolver port for every Service port that has none (leader). */
bool es_allocate_ports(struct es *e)
{
    struct controller *c = e->c;
    const struct service_cached *svc = es_service(e);
    size_t n = svc ? svc->n_ports : 0;
    if (!n)
        return false;
    struct port_map *map = calloc(n, sizeof(*map));
    if (!map)
        return false;
    for (size_t i = 0; i < n; i++) {
        const struct service_port *p = &svc->ports[i];
        const char *pn = p->name;
        const char *proto = p->protocol;
        struct port_map *m = &map[i];
        snprintf(m->name, sizeof(m->name), "%s", pn ? pn : "");
        snprintf(m->protocol, sizeof(m->protocol), "%s", proto ? proto : "TCP");
        m->port = p->has_port ? p->port : 0;
    }
    char err[512];
    if (ports_allocate(&c->ports, map, n, e->ports, e->n_ports, err, sizeof(err)) < 0) {
        free(map);
        es_text_setf(&e->spec_error, sizeof(err), "%s", err);
        return false;
    }
    ports_hold(&c->ports, e->ports, e->n_ports, -1);
    free(e->ports);
    e->ports = map;
    e->n_ports = n;
    ports_hold(&c->ports, e->ports, e->n_ports, 1);
    routes_changed(e);
    return true;
}

cJSON *es_ports_json(const struct es *e)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; i < e->n_ports; i++) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "name", e->ports[i].name);
        cJSON_AddNumberToObject(p, "port", e->ports[i].port);
        cJSON_AddStringToObject(p, "protocol", e->ports[i].protocol);
        cJSON_AddNumberToObject(p, "resolverPort", e->ports[i].resolver_port);
        cJSON_AddItemToArray(arr, p);
    }
    return arr;
}

/*
 * A resolver slice write that the cache could not guide: a create that found the slice there
 * (AlreadyExists) or an update with a stale resourceVersion (Conflict). The cache is behind
 * (an EndpointSlice watch still in its backoff after an API outage, say) and its event may be
 * seconds away, so the slice is read and rewritten now, not left to that event (found by the
 * soak, seed 188701454: a renamed port refused for 2 s after an outage).
 */
struct slice_write {
    struct controller *c;
    char *ns, *name;
    cJSON *endpoints, *ports, *labels;
    struct es_ref *es; /* whose slice it is (its slice_writes counts this one), or NULL */
};

static void slice_write_free(struct slice_write *w)
{
    if (w->es)
        es_ref_take(w->es);
    free(w->ns);
    free(w->name);
    cJSON_Delete(w->endpoints);
    cJSON_Delete(w->ports);
    cJSON_Delete(w->labels);
    free(w);
}

static struct slice_write *slice_write_new(struct controller *c, const struct es *e,
                                           const cJSON *want)
{
    struct slice_write *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->c = c;
    w->es = es_ref_new(e);
    w->ns = strdup(e->ns);
    w->name = dup_or_null(json_str(json_get(want, "metadata"), "name"));
    w->endpoints = cJSON_Duplicate(json_get(want, "endpoints"), 1);
    w->ports = cJSON_Duplicate(json_get(want, "ports"), 1);
    w->labels = cJSON_Duplicate(json_get(json_get(want, "metadata"), "labels"), 1);
    if (!w->es || !w->ns || !w->name || !w->endpoints || !w->ports || !w->labels) {
        slice_write_free(w);
        return NULL;
    }
    return w;
}

/* Our labels (which Service, managed by holdfast), endpoints and ports; other labels stay. */
static int slice_mutate(cJSON *obj, void *arg)
{
    struct slice_write *w = arg;
    cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    cJSON *labels = cJSON_GetObjectItemCaseSensitive(md, "labels");
    bool labels_ok = true;
    const cJSON *l;
    cJSON_ArrayForEach(l, w->labels)
    {
        const char *have = json_str(labels, l->string);
        labels_ok = labels_ok && have && cJSON_IsString(l) && strcmp(have, l->valuestring) == 0;
    }
    if (labels_ok && cJSON_Compare(json_get(obj, "endpoints"), w->endpoints, 1) &&
        cJSON_Compare(json_get(obj, "ports"), w->ports, 1))
        return 1;
    if (!md)
        return -1;
    if (!cJSON_IsObject(labels)) {
        cJSON_DeleteItemFromObjectCaseSensitive(md, "labels");
        labels = cJSON_AddObjectToObject(md, "labels");
    }
    cJSON_ArrayForEach(l, w->labels)
    {
        cJSON_DeleteItemFromObjectCaseSensitive(labels, l->string);
        cJSON_AddItemToObject(labels, l->string, cJSON_Duplicate(l, 1));
    }
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "endpoints");
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "ports");
    cJSON_AddItemToObject(obj, "endpoints", cJSON_Duplicate(w->endpoints, 1));
    cJSON_AddItemToObject(obj, "ports", cJSON_Duplicate(w->ports, 1));
    return 0;
}

/*
 * A resolver slice write of e's answered. One at a time per ElastiService: another one asked
 * for meanwhile (an echo of the ElastiService's own writes reconciles it, while the slice is not
 * in the cache yet) would create the same slice twice (AlreadyExists, then a read). It is made
 * now if the write failed, or if the cache holds the slice (an update's, or a create whose
 * watch event came before this answer; a version older than ours costs a 409 and a read);
 * otherwise the create's watch event, on its way, reconciles e with the slice in the cache.
 */
static void slice_write_done(struct slice_write *w, bool ok)
{
    struct es *e = w->es ? es_find(w->c, w->es->ns, w->es->name) : NULL;
    if (!e || e->slice_writes == 0 || --e->slice_writes > 0 || !e->slices_again)
        return;
    if (!ok || informer_get_item(w->c->inf_slices, w->ns, w->name)) {
        e->slices_again = false;
        es_reconcile(e);
    }
}

static void on_slice_rewritten(cJSON *obj, const struct kube_error *err, void *arg)
{
    slice_write_done(arg, !err);
    slice_write_free(arg);
    if (err)
        es_on_write_done(obj, err, "resolver slice rewrite");
}

static void slice_rewrite(struct slice_write *w)
{
    if (!kube_update_retry(w->c->kube, &RES_SLICE, w->ns, w->name, NULL, 3, slice_mutate,
                           on_slice_rewritten, w))
        slice_write_free(w);
}

static void on_slice_written(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct slice_write *w = arg;
    if (err && (err->code == KUBE_ERR_ALREADY_EXISTS || err->code == KUBE_ERR_CONFLICT)) {
        log_info("resolver slice write found the cache behind; reading and writing it again",
                 "namespace=%s name=%s error=%s", w->ns, w->name, err->reason);
        slice_rewrite(w);
        return;
    }
    slice_write_done(w, !err);
    slice_write_free(w);
    if (err)
        es_on_write_done(obj, err, "resolver slice write");
}

/* Creates or rewrites the resolver slices of e (leader, proxy mode). */
void resolver_slices_apply(struct es *e)
{
    struct controller *c = e->c;
    const struct service_cached *svc = es_service(e);
    if (!svc || !e->n_ports)
        return;
    if (e->slice_writes > 0) {
        e->slices_again = true; /* slice_write_done */
        return;
    }
    e->slices_again = false;
    routes_publish_now(e); /* listening on every port the slice names before it is written */
    /* the slice's owner: the Service's identity (what slices_resolver_slice reads of it) */
    cJSON *owner = cJSON_CreateObject();
    cJSON *owner_md = cJSON_AddObjectToObject(owner, "metadata");
    cJSON_AddStringToObject(owner_md, "name", svc->name);
    cJSON_AddStringToObject(owner_md, "namespace", svc->ns);
    if (svc->uid)
        cJSON_AddStringToObject(owner_md, "uid", svc->uid);
    struct resolver_endpoint eps[64];
    size_t n = 0;
    for (size_t i = 0; i < c->n_resolvers && n < 64; i++)
        eps[n++] = (struct resolver_endpoint){
            c->resolvers[i].ip, c->resolvers[i].node[0] ? c->resolvers[i].node : NULL};
    struct slice_port sp[64];
    size_t np = e->n_ports < 64 ? e->n_ports : 64;
    for (size_t i = 0; i < np; i++)
        sp[i] = (struct slice_port){e->ports[i].name, e->ports[i].protocol, NULL,
                                    e->ports[i].resolver_port};
    const struct slice_cached *mine[ES_RESOLVER_SLICES_MAX];
    size_t n_mine = es_resolver_slices(e, mine);
    static const char *const families[] = {"IPv4", "IPv6"};
    for (size_t f = 0; f < 2; f++) {
        bool any = false;
        for (size_t i = 0; i < n; i++)
            any = any || ((strchr(eps[i].ip, ':') != NULL) == (f == 1));
        cJSON *want = slices_resolver_slice(owner, families[f], eps, n, sp, np);
        if (!want)
            continue;
        const char *name = json_str(json_get(want, "metadata"), "name");
        const struct slice_cached *have = NULL;
        for (size_t k = 0; k < n_mine; k++) {
            if (strcmp(mine[k]->name, name) == 0)
                have = mine[k];
        }
        if (!any && have) {
            if (!kube_delete(c->kube, &RES_SLICE, e->ns, name, NULL, es_on_delete_done,
                             "resolver slice delete"))
                log_warn("could not send a resolver slice delete; the next reconcile retries",
                         "elastiservice=%s slice=%s", e->key, name);
        } else if (any && !have) {
            struct slice_write *sw = slice_write_new(c, e, want);
            if (sw && !kube_create(c->kube, &RES_SLICE, e->ns, want, on_slice_written, sw))
                slice_write_free(sw);
            else if (sw)
                e->slice_writes++;
        } else if (any && have) {
            bool same = cJSON_Compare(have->endpoints, json_get(want, "endpoints"), 1) &&
                        cJSON_Compare(have->ports_json, json_get(want, "ports"), 1);
            if (!same) {
                const char *rv = have->resource_version;
                cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(want, "metadata"),
                                        "resourceVersion", rv ? rv : "");
                struct slice_write *sw = slice_write_new(c, e, want);
                if (sw && !kube_update(c->kube, &RES_SLICE, e->ns, name, NULL, want,
                                       on_slice_written, sw))
                    slice_write_free(sw);
                else if (sw)
                    e->slice_writes++;
            }
        }
        cJSON_Delete(want);
    }
    cJSON_Delete(owner);
}

void resolver_slices_delete(struct es *e)
{
    const struct slice_cached *mine[ES_RESOLVER_SLICES_MAX];
    size_t n_mine = es_resolver_slices(e, mine);
    for (size_t k = 0; k < n_mine; k++) {
        if (!kube_delete(e->c->kube, &RES_SLICE, e->ns, mine[k]->name, NULL, es_on_delete_done,
                         "resolver slice delete"))
            log_warn("could not send a resolver slice delete; the next reconcile retries",
                     "elastiservice=%s slice=%s", e->key, mine[k]->name);
    }
    if (n_mine)
        e->slices_deleted_ms = clock_mono_ms();
}
