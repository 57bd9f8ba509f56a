/*
 * controller: the Kubernetes control plane's wiring and the ElastiService's life. See
 * controller.h for the contract and es.h for how the controller's files divide the work.
 *
 * Everything runs on the control thread. State comes from informers (their caches are the
 * truth); the per-ElastiService `struct es` keeps only what is parsed from the spec and what
 * is in flight. Writes are asynchronous kube calls; a write that fails is retried by the next
 * reconcile (every change, and every polling interval), never in a tight loop.
 *
 * This file: start and free, informer handlers, the indexes, reading an ElastiService (its
 * spec through spec.h when metadata.generation moves, its status), the mode (es_set_mode),
 * status writes and their echoes (rules in status.h), Events, reconcile, deletion (lingering
 * routes), the workload watch, leadership, metrics.
 */
#include "controller/controller.h"

#include <errno.h>
#include <stdarg.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "controller/es.h"
#include "common/xalloc.h"

/* What a text of struct es reads as when it could not be stored. */
static char es_text_oom[] = "out of memory";

void es_text_clear(char **t)
{
    if (*t != es_text_oom)
        free(*t);
    *t = NULL;
}

void es_text_setf(char **t, size_t cap, const char *fmt, ...)
{
    char buf[768];
    if (cap > sizeof(buf))
        cap = sizeof(buf);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    es_text_clear(t);
    if (buf[0]) {
        *t = strdup(buf);
        if (!*t)
            *t = es_text_oom;
    }
}

/* ---- small helpers ---- */

/* An RFC 3339 time in Unix seconds; 0 when absent or not a time. */
static int64_t parse_time(const char *s)
{
    int64_t t = 0;
    return clock_rfc3339_parse(s, &t) == 0 ? t : 0;
}

/* ---- indexes ---- */

/*
 * A small set of pointers filed under a key of a strmap: the ElastiServices of one Service
 * (usually one), or the EndpointSlice names of one Service (owned copies). An empty set leaves
 * the map.
 */
struct pset {
    void **v;
    size_t n, cap;
};

static void make_key(char *out, const char *ns, const char *name)
{
    key_make(out, KEY_MAX, ns, name);
}

struct es *es_find(struct controller *c, const char *ns, const char *name)
{
    char key[KEY_MAX];
    make_key(key, ns, name);
    return strmap_get(&c->by_name, key);
}

static bool pset_add(struct strmap *m, const char *key, void *item)
{
    struct pset *set = strmap_get(m, key);
    if (!set) {
        set = calloc(1, sizeof(*set));
        if (!set || strmap_put(m, key, set) < 0) {
            free(set);
            return false;
        }
    }
    if (set->n == set->cap) {
        size_t ncap = set->cap ? set->cap * 2 : 2;
        void **grown = realloc(set->v, ncap * sizeof(*grown));
        if (!grown)
            return false;
        set->v = grown;
        set->cap = ncap;
    }
    set->v[set->n++] = item;
    return true;
}

/* Takes out the first item `same` says is `like`, and returns it (NULL: none). */
static void *pset_take(struct strmap *m, const char *key, bool (*same)(const void *, const void *),
                       const void *like)
{
    struct pset *set = strmap_get(m, key);
    void *found = NULL;
    for (size_t i = 0; set && i < set->n && !found; i++) {
        if (same(set->v[i], like)) {
            found = set->v[i];
            set->v[i] = set->v[--set->n];
        }
    }
    if (set && !set->n) {
        strmap_del(m, key);
        free(set->v);
        free(set);
    }
    return found;
}

static bool same_ptr(const void *a, const void *b)
{
    return a == b;
}

static bool same_str(const void *a, const void *b)
{
    return strcmp(a, b) == 0;
}

static void name_set_add(struct strmap *m, const char *key, const char *name)
{
    const struct pset *set = strmap_get(m, key);
    for (size_t i = 0; set && i < set->n; i++) {
        if (same_str(set->v[i], name))
            return;
    }
    char *copy = strdup(name);
    if (!copy || !pset_add(m, key, copy)) {
        free(copy);
        log_error("out of memory indexing an EndpointSlice", "key=%s", key);
    }
}

static void free_pset(const char *key, void *value, void *owned)
{
    struct pset *set = value;
    for (size_t i = 0; owned && i < set->n; i++)
        free(set->v[i]);
    free(set->v);
    free(set);
}

/* Files e under its Service in by_service (after its spec changed). */
static void es_index_service(struct es *e)
{
    struct controller *c = e->c;
    char key[KEY_MAX];
    if (e->spec.service)
        make_key(key, e->ns, e->spec.service);
    if (e->service_key && e->spec.service && strcmp(e->service_key, key) == 0)
        return;
    if (e->service_key) {
        pset_take(&c->by_service, e->service_key, same_ptr, e);
        free(e->service_key);
        e->service_key = NULL;
    }
    if (e->spec.service) {
        e->service_key = strdup(key);
        if (e->service_key && !pset_add(&c->by_service, key, e))
            log_error("out of memory indexing an ElastiService", "key=%s", key);
    }
}

/* "plural/ns/name" of a workload. */
#define TARGET_KEY_MAX (KEY_MAX + 32)
static void make_target_key(char *out, const char *resource, const char *ns, const char *name)
{
    snprintf(out, TARGET_KEY_MAX, "%s/%s/%s", resource, ns, name);
}

static void start_rollout_watch(struct controller *c);

/* Files e under its scale target in by_target (after its spec changed). */
static void es_index_target(struct es *e)
{
    struct controller *c = e->c;
    char key[TARGET_KEY_MAX] = "";
    if (e->spec.target_ok)
        make_target_key(key, e->spec.target.res.resource, e->ns, e->spec.target.name);
    if (e->target_key && strcmp(e->target_key, key) == 0)
        return;
    if (e->target_key) {
        pset_take(&c->by_target, e->target_key, same_ptr, e);
        free(e->target_key);
        e->target_key = NULL;
    }
    if (!e->spec.target_ok)
        return;
    e->target_key = strdup(key);
    if (e->target_key && !pset_add(&c->by_target, key, e))
        log_error("out of memory indexing an ElastiService", "key=%s", key);
    if (e->spec.target.kind == TARGET_ROLLOUT)
        start_rollout_watch(c);
}

static void es_clear_spec(struct es *e)
{
    spec_clear(&e->spec);
    es_text_clear(&e->spec_error);
}

static void es_free(struct es *e)
{
    early_stop(e);
    if (e->cold_ev)
        event_free(e->cold_ev);
    cJSON_Delete(e->status_written);
    cJSON_Delete(e->status_pending);
    switch_cancel(e);
    routes_forget(e);
    if (e->service_key)
        pset_take(&e->c->by_service, e->service_key, same_ptr, e);
    free(e->service_key);
    if (e->target_key)
        pset_take(&e->c->by_target, e->target_key, same_ptr, e);
    free(e->target_key);
    ports_hold(&e->c->ports, e->ports, e->n_ports, -1);
    es_clear_spec(e);
    free(e->ports);
    free(e->not_ready_reason);
    free(e->leaving);
    free(e->wl_selector);
    es_text_clear(&e->eval_reason);
    es_text_clear(&e->awaited_rv);
    free(e->seen_rv);
    cJSON_Delete(e->seen_last);
    es_text_clear(&e->switch_why);
    es_text_clear(&e->switch_last);
    es_text_clear(&e->mode_other);
    cJSON_Delete(e->conditions);
    cJSON_Delete(e->wakewith_replicas);
    cJSON_Delete(e->last_cold_start);
    svc_state_unref(e->svc);
    free(e->ns);
    free(e->name);
    free(e->key);
    free(e->uid);
    free(e);
}

/* ---- parsing an ElastiService ---- */

/* Fills e->spec from obj; a problem goes to e->spec_error (one message). */
static void es_parse_spec(struct es *e, const cJSON *obj)
{
    struct controller *c = e->c;
    es_clear_spec(e);
    char err[512];
    if (spec_parse(json_get(obj, "spec"), c->opt.prometheus_address,
                   c->opt.prometheus_authorization, &e->spec, err, sizeof(err)) < 0)
        es_text_setf(&e->spec_error, sizeof(err), "%s", err);
}

/* ---- mode ---- */

const char *es_mode_name(const struct es *e)
{
    switch (e->mode) {
    case ES_MODE_SERVE:
        return "serve";
    case ES_MODE_PROXY:
        return "proxy";
    case ES_MODE_OTHER:
        return es_text(e->mode_other);
    case ES_MODE_NONE:
        break;
    }
    return "";
}

static void mode_trace(const struct es *e, const char *old, const char *why)
{
    log_debug("mode", "elastiservice=%s from=%s to=%s why=%s", e->key, *old ? old : "(none)",
              *es_mode_name(e) ? es_mode_name(e) : "(none)", why);
}

/*
 * The one place the leader changes the mode (status.mode is written by the caller, with the
 * conditions that go with it), with its entry actions:
 *   proxy: the woken wait (awaiting_wake) begins, and the pods ready now are recorded as on
 *          their way out (leaving_record), so they are no reason to switch back to serve;
 *   serve, from proxy: no pod is on its way out any more, and no woken target is unready.
 */
static void leaving_record(struct es *e);

void es_set_mode(struct es *e, enum es_mode mode, const char *why)
{
    char old[8];
    snprintf(old, sizeof(old), "%s", es_mode_name(e));
    enum es_mode from = e->mode;
    e->mode = mode;
    es_text_clear(&e->mode_other);
    if (mode == ES_MODE_PROXY) {
        e->awaiting_wake = true;
        leaving_record(e);
    } else if (mode == ES_MODE_SERVE && from == ES_MODE_PROXY) {
        e->n_leaving = 0;
        free(e->not_ready_reason);
        e->not_ready_reason = NULL;
    }
    mode_trace(e, old, why);
}

/* The mode status.mode shows (NULL: none), taken as it is when no write of ours is newer: no
 * transition of this replica, so no entry action; traced when it differs. */
static void es_adopt_mode(struct es *e, const char *text)
{
    char old[8];
    snprintf(old, sizeof(old), "%s", es_mode_name(e));
    enum es_mode mode = !text || !*text              ? ES_MODE_NONE
                        : strcmp(text, "serve") == 0 ? ES_MODE_SERVE
                        : strcmp(text, "proxy") == 0 ? ES_MODE_PROXY
                                                     : ES_MODE_OTHER;
    e->mode = mode;
    if (mode == ES_MODE_OTHER)
        es_text_setf(&e->mode_other, 8, "%s", text);
    else
        es_text_clear(&e->mode_other);
    if (strcmp(old, es_mode_name(e)) != 0)
        mode_trace(e, old, "status.mode as the informer shows it");
}

/* Keeps what es_upsert reads of obj (borrowed) in e->seen_last: its metadata and status, and
 * its spec when it has no generation (es_spec_changed then parses it). Out of memory: none. */
static void es_keep_last(struct es *e, const cJSON *obj)
{
    cJSON_Delete(e->seen_last);
    e->seen_last = cJSON_CreateObject();
    const cJSON *md = json_get(obj, "metadata");
    const cJSON *g = json_get(md, "generation");
    static const char *const keep[] = {"metadata", "status", "spec"};
    for (size_t i = 0; e->seen_last && i < sizeof(keep) / sizeof(keep[0]); i++) {
        const cJSON *v = json_get(obj, keep[i]);
        if (!v || (i == 2 && cJSON_IsNumber(g) && g->valuedouble >= 1))
            continue;
        cJSON *copy = cJSON_Duplicate(v, 1);
        if (!copy || !cJSON_AddItemToObject(e->seen_last, keep[i], copy)) {
            cJSON_Delete(copy);
            cJSON_Delete(e->seen_last);
            e->seen_last = NULL;
        }
    }
}

static void es_parse_status(struct es *e, const cJSON *obj)
{
    const cJSON *md = json_get(obj, "metadata");
    const cJSON *status = json_get(obj, "status");
    const char *mode = json_str(status, "mode");
    const char *rv = json_str(md, "resourceVersion");
    if (e->status_inflight > 0 && !e->seen_rv)
        e->seen_rv = calloc(STATUS_SEEN_RV_RING, sizeof(e->seen_rv[0]));
    status_seen_add(e->seen_rv, &e->seen_next, rv);
    if (e->seen_rv && obj != e->seen_last)
        es_keep_last(e, obj);
    if (status_echo_arrived(e->awaited_rv, e->awaited_ms, rv, clock_mono_ms()))
        es_text_clear(&e->awaited_rv); /* the informer caught up with our last write */
    bool ours_newer = e->status_inflight > 0 || e->busy || e->awaited_rv;
    if (!ours_newer) {
        es_adopt_mode(e, mode);
        cJSON_Delete(e->status_written);
        e->status_written = status_shown(status); /* what a sync compares with */
    }
    wakewith_status(e, status, ours_newer);
    coldstart_status_adopt(e, status, ours_newer);
    e->last_scaled_up = parse_time(json_str(status, "lastScaledUpTime"));
    if (e->last_scaled_up < e->scaled_up_unwritten)
        e->last_scaled_up = e->scaled_up_unwritten; /* on its way */
    e->reconciled_at = parse_time(json_str(status, "lastReconciledTime"));
    const cJSON *og = json_get(status, "observedGeneration");
    e->status_gen = cJSON_IsNumber(og) ? (int64_t)og->valuedouble : 0;
    e->created = parse_time(json_str(md, "creationTimestamp"));
    const char *uid = json_str(md, "uid");
    if (uid && (!e->uid || strcmp(e->uid, uid) != 0)) {
        free(e->uid);
        e->uid = strdup(uid);
    }
    const cJSON *gen = json_get(md, "generation");
    e->generation = cJSON_IsNumber(gen) ? (int64_t)gen->valuedouble : 0;
    e->deleting = json_str(md, "deletionTimestamp") != NULL;
    e->has_finalizer = false;
    const cJSON *f;
    cJSON_ArrayForEach(f, json_get(md, "finalizers"))
    {
        if (cJSON_IsString(f) && strcmp(f->valuestring, FINALIZER) == 0)
            e->has_finalizer = true;
    }
    if (e->has_finalizer)
        e->finalizer_sent = false;
    /* Resolver ports are kept for the ElastiService's lifetime: a status without them (an
     * older write, a hand edit) does not take them away, and neither does an echo older than
     * our own last write (which may have followed the Service's ports). */
    const cJSON *ports = json_get(status, "ports");
    size_t n = (size_t)cJSON_GetArraySize(ports);
    if (n && (!ours_newer || !e->n_ports)) {
        ports_hold(&e->c->ports, e->ports, e->n_ports, -1);
        free(e->ports);
        e->ports = NULL;
        e->n_ports = 0;
        e->ports = calloc(n, sizeof(*e->ports));
        const cJSON *p;
        cJSON_ArrayForEach(p, ports)
        {
            const cJSON *rp = json_get(p, "resolverPort");
            const cJSON *pp = json_get(p, "port");
            if (!e->ports || !cJSON_IsNumber(rp))
                continue;
            struct port_map *m = &e->ports[e->n_ports++];
            snprintf(m->name, sizeof(m->name), "%s",
                     json_str(p, "name") ? json_str(p, "name") : "");
            snprintf(m->protocol, sizeof(m->protocol), "%s",
                     json_str(p, "protocol") ? json_str(p, "protocol") : "TCP");
            m->port = cJSON_IsNumber(pp) ? (unsigned)pp->valueint : 0;
            m->resolver_port = (unsigned)rp->valueint;
        }
        ports_hold(&e->c->ports, e->ports, e->n_ports, 1);
    }
    /* A replica that does not lead learns why a woken target has no pod from the leader's
     * ScaleUpFailed condition, so the 504s of the clients it holds say the same as the
     * leader's (its own failed scale call, if any, says more and is kept). */
    if (!e->c->leader && !e->scale_call_failed) {
        const char *why = NULL;
        const cJSON *cond;
        cJSON_ArrayForEach(cond, json_get(status, "conditions"))
        {
            const char *type = json_str(cond, "type"), *st = json_str(cond, "status");
            if (type && st && strcmp(type, "ScaleUpFailed") == 0 && strcmp(st, "True") == 0)
                why = json_str(cond, "message");
        }
        if (why && !*why)
            why = NULL;
        if ((why == NULL) != (e->not_ready_reason == NULL) ||
            (why && strcmp(why, e->not_ready_reason) != 0)) {
            free(e->not_ready_reason);
            e->not_ready_reason = why ? strdup(why) : NULL;
        }
    }
    if (ours_newer && e->conditions)
        return;
    cJSON_Delete(e->conditions);
    const cJSON *conds = json_get(status, "conditions");
    e->conditions = cJSON_IsArray(conds) ? cJSON_Duplicate(conds, 1) : cJSON_CreateArray();
}

/* ---- status, conditions, events ---- */

void es_on_write_done(cJSON *obj, const struct kube_error *err, void *arg)
{
    const char *what = arg;
    if (err)
        log_warn("kubernetes write failed; the next reconcile retries",
                 "what=%s error=%s "
                 "message=%s",
                 what, err->reason, err->message);
}

/* A delete that finds the object gone (another replica, the namespace, a delete before) is done. */
void es_on_delete_done(cJSON *obj, const struct kube_error *err, void *arg)
{
    es_on_write_done(obj, err && err->code == KUBE_ERR_NOT_FOUND ? NULL : err, arg);
}

/* Whether the condition of this type has this reason. */
bool es_cond_reason_is(const struct es *e, const char *type, const char *reason)
{
    return status_cond_reason_is(e->conditions, type, reason);
}

/* Sets one condition in e->conditions; true when it changed (a status write is due). */
bool es_cond_set(struct es *e, const char *type, bool status, const char *reason,
                 const char *message)
{
    return status_cond_set(e->conditions, type, status, reason, message, e->generation,
                           clock_wall_s());
}

struct es_ref *es_ref_new(const struct es *e)
{
    struct es_ref *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->c = e->c;
    r->ns = strdup(e->ns);
    r->name = strdup(e->name);
    if (!r->ns || !r->name) {
        free(r->ns);
        free(r->name);
        free(r);
        return NULL;
    }
    return r;
}

/* The ElastiService a callback was for, if it still exists; frees the reference. */
struct es *es_ref_take(struct es_ref *r)
{
    struct es *e = es_find(r->c, r->ns, r->name);
    free(r->ns);
    free(r->name);
    free(r);
    return e;
}

static void es_acknowledge(struct es *e);
static void es_upsert(struct controller *c, const cJSON *obj);
static bool es_follows_workload(const struct es *e);
static void es_watch_scale(struct es *e, int replicas);

static void on_status_written(cJSON *obj, const struct kube_error *err, void *arg)
{
    int64_t generation = ((struct es_ref *)arg)->generation;
    int64_t scaled_up = ((struct es_ref *)arg)->scaled_up;
    struct es *e = es_ref_take(arg);
    if (e && !err && scaled_up && scaled_up == e->scaled_up_unwritten)
        e->scaled_up_unwritten = 0;
    if (e && !err && generation > e->acked_gen)
        e->acked_gen = generation;
    if (e && !err)
        e->reconciled_at = clock_wall_s(); /* the write carried lastReconciledTime */
    if (e && e->status_inflight > 0)
        e->status_inflight--;
    const char *rv = json_str(json_get(obj, "metadata"), "resourceVersion");
    const struct es_cached *cached = e ? informer_get_item(e->c->inf_es, e->ns, e->name) : NULL;
    const char *cached_rv = cached ? cached->resource_version : NULL;
    enum status_echo echo = status_echo(rv, cached_rv, e && status_seen_has(e->seen_rv, rv));
    bool newer_cached = echo == STATUS_ECHO_SUPERSEDED;
    if (echo == STATUS_ECHO_DELIVERED) {
        rv = NULL; /* the watch delivered the echo before this answer: nothing to await */
    } else if (echo == STATUS_ECHO_SUPERSEDED) {
        /* The watch delivered the echo and then a later version (another replica's write, a
         * hand edit), both while this write was in flight, when our mode counted as newer and
         * theirs was not taken. Neither comes again: awaiting the echo would hide the later
         * status for STATUS_AWAIT_ECHO_MS, and a replica that leads meanwhile would act on its
         * stale mode (found by the soak: a follower that woke a service "switched" it to serve
         * again when it took over). The cached version is the newest: it is taken below. */
        rv = NULL;
    }
    /* the version the informer showed last (after the echo: while this write was in flight) */
    cJSON *last = NULL;
    if (e && e->status_inflight == 0) {
        free(e->seen_rv); /* no write in flight: no echo to look for */
        e->seen_rv = NULL;
        last = e->seen_last;
        e->seen_last = NULL;
    }
    if (e && !err && rv) {
        es_text_setf(&e->awaited_rv, 64, "%s", rv);
        e->awaited_ms = clock_mono_ms();
    }
    if (e && err)
        e->status_dirty = true; /* on_scale (every poll) writes it again */
    if (e && !err)
        es_acknowledge(e); /* a generation seen while this write was in flight */
    if (e && !err && newer_cached && e->status_inflight == 0 && !e->lingering && last)
        es_upsert(e->c, last);
    cJSON_Delete(last);
    /* An ElastiService deleted meanwhile (its finalizer removed while a restore's status write
     * was on its way) has no status left to write. */
    if (err && !(err->code == KUBE_ERR_NOT_FOUND && (!e || e->deleting)))
        log_warn("status write failed; the next reconcile retries",
                 "elastiservice=%s error=%s "
                 "message=%s",
                 e ? e->key : "?", err->reason, err->message);
    if (e && e->status_pending) {
        if (!err) {
            cJSON_Delete(e->status_written);
            e->status_written = e->status_pending;
        } else {
            cJSON_Delete(e->status_pending);
        }
        e->status_pending = NULL;
    }
    if (e && e->status_inflight == 0 && e->status_resync) {
        bool touch = e->status_retouch;
        e->status_resync = e->status_retouch = false;
        es_status_sync(e, touch);
    }
}

/* The status e wants the API to show (status_want's members). */
static cJSON *es_status_want(const struct es *e)
{
    bool lead = e->c->leader && e->mode != ES_MODE_NONE;
    return status_want(
        lead ? es_mode_name(e) : NULL, lead && e->n_ports ? es_ports_json(e) : NULL, e->conditions,
        e->generation,
        e->last_scaled_up > e->scaled_up_unwritten ? e->last_scaled_up : e->scaled_up_unwritten,
        e->c->leader ? e->wakewith_replicas : NULL, e->c->leader ? e->last_cold_start : NULL);
}

void es_status_sync(struct es *e, bool touch)
{
    if (e->status_inflight > 0) {
        e->status_resync = true;
        e->status_retouch = e->status_retouch || touch;
        return;
    }
    cJSON *want = es_status_want(e);
    cJSON *changes = status_changes(want, e->status_written);
    if (!changes && !touch) {
        cJSON_Delete(want);
        return;
    }
    cJSON *patch = status_patch(changes, e->generation, clock_wall_s());
    struct es_ref *ref = es_ref_new(e);
    if (ref) {
        ref->generation = e->generation;
        ref->scaled_up = e->scaled_up_unwritten;
    }
    if (ref && kube_patch(e->c->kube, &RES_ES, e->ns, e->name, "status", KUBE_PATCH_MERGE, patch,
                          on_status_written, ref)) {
        e->status_inflight++;
        cJSON_Delete(e->status_pending);
        e->status_pending = want;
    } else {
        if (ref)
            es_ref_take(ref);
        cJSON_Delete(want);
        e->status_dirty = true; /* the next poll syncs again */
    }
    cJSON_Delete(patch);
}

void es_event(struct es *e, bool warning, const char *reason, const char *message)
{
    struct events_object obj = {
        .api_version = "elasti.truefoundry.com/v1alpha1",
        .kind = "ElastiService",
        .ns = e->ns,
        .name = e->name,
        .uid = e->uid,
    };
    events_record(e->c->events, &obj, warning ? EVENTS_WARNING : EVENTS_NORMAL, reason, "%s",
                  message);
    log_info("event", "elastiservice=%s type=%s reason=%s message=%s", e->key,
             warning ? "Warning" : "Normal", reason, message);
}

/* ---- what the informers know ---- */

const struct service_cached *es_service(const struct es *e)
{
    return e->spec.service ? informer_get_item(e->c->inf_svc, e->ns, e->spec.service) : NULL;
}

struct slices_walk {
    const struct es *e;
    const char *port_name;
    struct ready_endpoint *eps;
    size_t n;
    const struct slice_cached *resolver_slices[ES_RESOLVER_SLICES_MAX];
    size_t n_resolver;
};

static bool slice_of(const struct slice_cached *slice, const char *ns, const char *service)
{
    return slice->service && strcmp(slice->ns, ns) == 0 && strcmp(slice->service, service) == 0;
}

static void collect_ready(const struct slice_cached *slice, void *arg)
{
    struct slices_walk *w = arg;
    if (slice->manager == SLICE_CONTROLLER && slice_of(slice, w->e->ns, w->e->spec.service))
        slices_cached_ready_endpoints(slice, w->port_name, &w->eps, &w->n);
}

static void collect_resolver_slices(const struct slice_cached *slice, void *arg)
{
    struct slices_walk *w = arg;
    if (slice->manager == SLICE_HOLDFAST && slice_of(slice, w->e->ns, w->e->spec.service) &&
        w->n_resolver < ES_RESOLVER_SLICES_MAX)
        w->resolver_slices[w->n_resolver++] = slice;
}

/* Calls fn for every EndpointSlice of e's Service (through slices_by_svc). */
static void foreach_slice_of(const struct es *e,
                             void (*fn)(const struct slice_cached *slice, void *arg), void *arg)
{
    const struct controller *c = e->c;
    if (!e->spec.service)
        return;
    char key[KEY_MAX];
    make_key(key, e->ns, e->spec.service);
    const struct pset *set = strmap_get(&c->slices_by_svc, key);
    for (size_t i = 0; set && i < set->n; i++) {
        const struct slice_cached *slice = informer_get_item(c->inf_slices, e->ns, set->v[i]);
        if (slice)
            fn(slice, arg);
    }
}

/* Ready pod endpoints of one Service port (caller frees *eps). */
size_t es_ready_endpoints(const struct es *e, const char *port_name, struct ready_endpoint **eps)
{
    struct slices_walk w = {.e = e, .port_name = port_name};
    foreach_slice_of(e, collect_ready, &w);
    *eps = w.eps;
    return w.n;
}

/*
 * Services holdfast refuses to proxy: headless ones (clusterIP None: clients resolve the pods'
 * own addresses, so a resolver EndpointSlice would not steer them) and ExternalName ones (no
 * endpoints at all). True with the reason in why.
 */
bool es_service_unsupported(const struct es *e, char *why, size_t len)
{
    const struct service_cached *svc = es_service(e);
    const char *type = svc ? svc->type : NULL;
    const char *cip = svc ? svc->cluster_ip : NULL;
    if (type && strcmp(type, "ExternalName") == 0) {
        snprintf(why, len, "Service %s is of type ExternalName: it has no endpoints to steer",
                 e->spec.service);
        return true;
    }
    if (cip && strcmp(cip, "None") == 0) {
        snprintf(why, len,
                 "Service %s is headless (clusterIP None): clients reach pods by their "
                 "own addresses, so holdfast cannot hold their traffic",
                 e->spec.service);
        return true;
    }
    return false;
}

static bool endpoint_leaving(const struct es *e, const char *ip)
{
    return decide_leaving(ip, e->leaving, e->n_leaving, e->leaving_until_ms, clock_mono_ms());
}

/*
 * Calls fn for every ready endpoint of every port of the target's Service (the EndpointSlice
 * controller's slices), until fn returns true; returns whether it did.
 */
static bool each_ready_endpoint(const struct es *e,
                                bool (*fn)(const struct es *e, const struct ready_endpoint *ep,
                                           void *arg),
                                void *arg)
{
    const struct service_cached *svc = es_service(e);
    for (size_t k = 0; svc && k < svc->n_ports; k++) {
        const char *pn = svc->ports[k].name;
        struct ready_endpoint *eps = NULL;
        size_t n = es_ready_endpoints(e, pn ? pn : "", &eps);
        for (size_t i = 0; i < n; i++) {
            if (fn(e, &eps[i], arg)) {
                free(eps);
                return true;
            }
        }
        free(eps);
    }
    return false;
}

struct first_ready {
    char *first;
    size_t len;
};

static bool ready_not_leaving(const struct es *e, const struct ready_endpoint *ep, void *arg)
{
    struct first_ready *f = arg;
    if (endpoint_leaving(e, ep->ip))
        return false;
    if (f->first)
        addr_format(f->first, f->len, ep->ip, ep->port);
    return true;
}

bool es_has_ready_endpoint(const struct es *e, char *first, size_t len)
{
    struct first_ready f = {first, len};
    return each_ready_endpoint(e, ready_not_leaving, &f);
}

static bool record_leaving(const struct es *ce, const struct ready_endpoint *ep, void *arg)
{
    struct es *e = arg; /* the same es: each_ready_endpoint only reads it */
    (void)ce;
    if (endpoint_leaving(e, ep->ip))
        return false; /* already listed (another port) */
    e->leaving = xrealloc(e->leaving, (e->n_leaving + 1) * sizeof(*e->leaving));
    struct leaving_pod *l = &e->leaving[e->n_leaving++];
    snprintf(l->ip, sizeof(l->ip), "%s", ep->ip);
    l->gone = false;
    return false;
}

/* Remembers the pods listed as ready endpoints now as on their way out (proxy mode begins). */
static void leaving_record(struct es *e)
{
    e->n_leaving = 0;
    e->leaving_epoch++;
    e->leaving_polled = false;
    e->leaving_generation = e->wl_generation;
    e->leaving_until_ms = clock_mono_ms() + LEAVING_MAX_MS;
    each_ready_endpoint(e, record_leaving, e);
}

/* Whether some pod listed when proxy mode began is not known gone (a pod list may tell). */
static bool leaving_unsettled(const struct es *e)
{
    for (size_t i = 0; i < e->n_leaving; i++)
        if (!e->leaving[i].gone)
            return true;
    return false;
}

static bool listed_ready(const struct es *e, const struct ready_endpoint *ep, void *arg)
{
    (void)e;
    return strcmp(ep->ip, arg) == 0;
}

/* Forgets the pods known gone that no slice lists ready any more: the EndpointSlice controller
 * caught up, and a new pod given that address later counts. */
static void leaving_prune(struct es *e)
{
    size_t kept = 0;
    for (size_t i = 0; i < e->n_leaving; i++) {
        if (e->leaving[i].gone && !each_ready_endpoint(e, listed_ready, e->leaving[i].ip))
            continue;
        e->leaving[kept++] = e->leaving[i];
    }
    e->n_leaving = kept;
}

/* Whether the informer caches a resolver EndpointSlice of e's Service. */
bool es_resolver_slice_cached(const struct es *e)
{
    struct slices_walk w = {.e = e};
    foreach_slice_of(e, collect_resolver_slices, &w);
    return w.n_resolver > 0;
}

size_t es_resolver_slices(const struct es *e, const struct slice_cached **out)
{
    struct slices_walk w = {.e = e};
    foreach_slice_of(e, collect_resolver_slices, &w);
    for (size_t k = 0; k < w.n_resolver; k++)
        out[k] = w.resolver_slices[k];
    return w.n_resolver;
}

/* ---- KEDA, scale and wake (through controller/target) ---- */

void es_on_target_done(const struct target_result *res, const struct kube_error *err, void *arg)
{
    if (err)
        log_warn("scale target operation failed; the next reconcile retries",
                 "what=%s error=%s message=%s", (const char *)arg, err->reason, err->message);
}

/* A pause or resume answered: its ScaledObject's maxReplicaCount bounds the wake (wake.c). */
static void on_keda_done(const struct target_result *res, const struct kube_error *err, void *arg)
{
    bool pause = ((struct es_ref *)arg)->replicas;
    struct es *e = es_ref_take(arg);
    if (err) {
        es_on_target_done(res, err, pause ? "keda pause" : "keda resume");
        return;
    }
    if (e && res->found)
        e->keda_max_replicas = res->keda_max_replicas;
}

void es_keda_set(struct es *e, bool pause)
{
    if (!e->spec.keda)
        return;
    struct es_ref *ref = es_ref_new(e);
    if (ref)
        ref->replicas = pause;
    struct target_op *op =
        !ref    ? NULL
        : pause ? target_keda_pause(e->c->kube, e->ns, e->spec.keda, on_keda_done, ref)
                : target_keda_resume(e->c->kube, e->ns, e->spec.keda, on_keda_done, ref);
    if (ref && !op)
        es_ref_take(ref);
    if (!op)
        log_warn("could not send the KEDA ScaledObject patch; the next reconcile retries",
                 "elastiservice=%s scaledobject=%s pause=%b", e->key, e->spec.keda, pause);
}

/* The scale target as the workload watch caches it (name, resourceVersion, spec.replicas, ...),
 * or NULL: not watched (--watch-targets=false), not seen yet, or gone. */
const cJSON *es_cached_workload(const struct es *e)
{
    const struct controller *c = e->c;
    if (!e->spec.target_ok)
        return NULL;
    const struct informer *inf = e->spec.target.kind == TARGET_DEPLOYMENT    ? c->inf_deploy
                                 : e->spec.target.kind == TARGET_STATEFULSET ? c->inf_sts
                                                                             : c->inf_rollout;
    return inf ? informer_get(inf, e->ns, e->spec.target.name) : NULL;
}

/* ---- reconcile ---- */

/*
 * Leader: a spec change that the status does not acknowledge yet gets a status write, which
 * carries observedGeneration (so GitOps tools waiting for it go on). Not while a status write
 * is in flight: its answer calls this again (it may carry an older generation, and its echo
 * can come before its answer), or its failure is retried (status_dirty).
 */
static void es_acknowledge(struct es *e)
{
    if (!e->c->leader || e->deleting || e->generation <= 0 || e->status_inflight > 0)
        return;
    if (e->generation <= e->status_gen || e->generation <= e->acked_gen)
        return;
    /* A new ElastiService (no mode yet) that is evaluated: its first evaluation, due at once,
     * writes the status (its mode, or why it has none), and that write carries
     * observedGeneration. One write instead of two. */
    if (e->mode == ES_MODE_NONE && e->evaluated_ms == 0 && es_follows_workload(e))
        return;
    es_status_sync(e, true);
}

/* The Service's ports (name, number, protocol, in order) differ from e->ports. */
static bool ports_differ(const struct es *e)
{
    const struct service_cached *svc = es_service(e);
    if (!svc || !svc->ports_is_array)
        return false; /* no Service (yet): keep what is allocated */
    if (svc->n_ports != e->n_ports)
        return true;
    for (size_t i = 0; i < svc->n_ports; i++) {
        const struct port_map *m = &e->ports[i];
        const struct service_port *p = &svc->ports[i];
        const char *pn = p->name, *proto = p->protocol;
        if (strcmp(m->name, pn ? pn : "") != 0 || strcmp(m->protocol, proto ? proto : "TCP") != 0 ||
            !p->has_port || m->port != p->port)
            return true;
    }
    return false;
}

/*
 * Leader: status.ports follows the Service (a port added, removed, renamed or renumbered);
 * a port keeps its resolver port by name. In proxy mode the resolver slices follow too
 * (es_reconcile applies them).
 */
static void es_follow_ports(struct es *e)
{
    if (!e->n_ports || !ports_differ(e) || !es_allocate_ports(e))
        return;
    routes_changed(e);
    routes_publish_now(e); /* listening on the new ports before status.ports names them */
    es_status_sync(e, false);
    log_info("the Service's ports changed: status.ports follows", "elastiservice=%s ports=%zu",
             e->key, e->n_ports);
}

static void es_reconcile_spec(struct es *e);

void es_reconcile(struct es *e)
{
    early_sync(e);
    es_reconcile_spec(e);
    es_acknowledge(e);
}

static void es_reconcile_spec(struct es *e)
{
    struct controller *c = e->c;
    c->reconciles++;
    const struct es_cached *obj = informer_get_item(c->inf_es, e->ns, e->name);
    if (!obj)
        return;
    if (e->deleting) {
        finalize_deleted(e, obj);
        return;
    }
    if (c->leader && !e->has_finalizer)
        finalize_ensure(e, obj);
    /* Only a change is written: every status write comes back as an informer event, and an
     * unconditional write here would chase its own echo. */
    if (e->spec_error) {
        c->reconcile_errors++;
        if (es_cond_set(e, "Ready", false, "InvalidSpec", e->spec_error) && c->leader)
            es_status_sync(e, false);
        return;
    }
    char why[256];
    if (es_service_unsupported(e, why, sizeof(why))) {
        if (es_cond_set(e, "Ready", false, "UnsupportedService", why) && c->leader)
            es_status_sync(e, false);
        return;
    }
    if (!c->leader)
        return;
    es_follow_ports(e);
    if (e->mode == ES_MODE_PROXY) {
        if (es_has_ready_endpoint(e, NULL, 0) && !e->awaiting_wake)
            switch_enter_serve(e);
        else
            resolver_slices_apply(e);
    } else if (e->switching) {
        /* a scale to zero waits for the data path: its resolver slice follows the Service too
         * (found by the soak: a port renamed meanwhile kept the old name, so the probe never
         * reached holdfast and the pods took the resets of a replica killed meanwhile) */
        resolver_slices_apply(e);
    }
}

/*
 * Whether obj's spec must be parsed: its metadata.generation moved (the API server bumps it on
 * every spec change, and not on status or metadata writes, so the echoes of our own status
 * writes, finalizer patches and label edits are not parsed again, nor are their trigger
 * queries and probe rules rebuilt), or it has none, or the object was recreated under the same
 * name (another uid). Counts the parses.
 */
static bool es_spec_changed(struct es *e, const cJSON *obj)
{
    const cJSON *md = json_get(obj, "metadata");
    const cJSON *g = json_get(md, "generation");
    int64_t gen = cJSON_IsNumber(g) && g->valuedouble >= 1 ? (int64_t)g->valuedouble : 0;
    const char *uid = json_str(md, "uid");
    bool recreated = uid && e->uid && strcmp(uid, e->uid) != 0;
    if (gen && gen == e->spec_gen && !recreated)
        return false;
    e->spec_gen = gen;
    e->c->spec_parses++;
    return true;
}

/*
 * A new ElastiService, seen by the leader: when the workload watch's cache shows its target at
 * 0 replicas, that is acted on at once, as the watch's event would have been (proxy mode, the
 * resolver slice), and the first /scale read waits for the ElastiService's phase of the
 * interval instead of being sent at once: the read would only say what the cache says.
 */
static void es_first_look(struct es *e)
{
    if (!es_follows_workload(e) || e->evaluated_ms)
        return;
    const cJSON *r = json_get(json_get(es_cached_workload(e), "spec"), "replicas");
    if (cJSON_IsNumber(r) && r->valueint == 0)
        es_watch_scale(e, 0);
}

static void es_upsert(struct controller *c, const cJSON *obj)
{
    const cJSON *md = json_get(obj, "metadata");
    const char *ns = json_str(md, "namespace"), *name = json_str(md, "name");
    if (!ns || !name)
        return;
    struct es *e = es_find(c, ns, name);
    bool created = false;
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e)
            return;
        e->c = c;
        e->ns = strdup(ns);
        e->name = strdup(name);
        size_t klen = strlen(ns) + strlen(name) + 2;
        e->key = malloc(klen);
        if (e->key)
            snprintf(e->key, klen, "%s/%s", ns, name);
        e->svc = dataplane_service(c->dp, ns, name);
        if (!e->ns || !e->name || !e->key || strmap_put(&c->by_name, e->key, e) < 0) {
            log_error("out of memory adding an ElastiService; the next relist retries",
                      "namespace=%s name=%s", ns, name);
            es_free(e);
            return;
        }
        e->next = c->list;
        if (c->list)
            c->list->prev = e;
        c->list = e;
        es_linger_sweep(c, e->key); /* the route of its deleted namesake goes now */
        created = true;
    }
    if (es_spec_changed(e, obj)) {
        es_parse_spec(e, obj);
        es_index_service(e);
        es_index_target(e);
    }
    es_parse_status(e, obj); /* keeps our mode and conditions while our writes are in flight */
    es_reconcile(e);
    if (created)
        es_first_look(e);
    routes_changed(e);
}

/* ---- informer handlers ---- */

/*
 * The ElastiService cache is compact (struct es_cached): its codec. Its handlers get each
 * event's tree, which es_upsert parses into struct es (the spec when its generation moved).
 */
static void *es_decode_item(const cJSON *obj, char *err, size_t errlen)
{
    return es_cached_decode(obj, err, errlen);
}

static void es_free_item(void *item)
{
    es_cached_free(item);
}

static const char *es_rv(const void *item)
{
    return ((const struct es_cached *)item)->resource_version;
}

static const char *es_uid(const void *item)
{
    return ((const struct es_cached *)item)->uid;
}

static void on_es_add(const void *item, const cJSON *obj, void *arg)
{
    es_upsert(arg, obj);
}

static void on_es_update(const void *old, const void *item, const cJSON *obj, void *arg)
{
    es_upsert(arg, obj);
}

/*
 * A deleted ElastiService that still holds connections on this replica keeps its route: the
 * leader restored its target before letting it go (finalize_deleted), so the held requests are
 * relayed to the restored pods as soon as they are ready, instead of each getting a 503. Out of
 * every index (no reconcile, no poll, no wake), freed by es_linger_sweep once nothing is held, or
 * after its hold timeout (each held request has had its answer by then), or when its Service
 * is deleted too (the held requests get 503 "service was removed" then), or when an
 * ElastiService of the same name is created again.
 */
static void es_linger(struct es *e)
{
    struct controller *c = e->c;
    switch_cancel(e);
    if (e->service_key)
        pset_take(&c->by_service, e->service_key, same_ptr, e);
    free(e->service_key);
    e->service_key = NULL;
    if (e->target_key)
        pset_take(&c->by_target, e->target_key, same_ptr, e);
    free(e->target_key);
    e->target_key = NULL;
    e->lingering = true;
    e->linger_until_ms = clock_mono_ms() + (uint64_t)e->spec.hold_timeout_s * 1000 + 1000;
    e->prev = NULL;
    e->next = c->lingering;
    if (c->lingering)
        c->lingering->prev = e;
    c->lingering = e;
    log_info("elastiservice deleted while holding connections: its route stays until they are "
             "answered",
             "elastiservice=%s held=%ld", e->key, (long)svc_state_held(e->svc));
}

static void linger_unlink(struct controller *c, struct es *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->lingering = e->next;
    if (e->next)
        e->next->prev = e->prev;
    es_free(e);
    routes_schedule(c);
}

/* Frees lingering routes that are done, or all of those named key (a new ElastiService). */
void es_linger_sweep(struct controller *c, const char *key)
{
    uint64_t now = clock_mono_ms();
    struct es *e = c->lingering;
    while (e) {
        struct es *next = e->next;
        /* The Service gone too (its namespace is being deleted, say): nothing can relay the
         * held requests any more, so they get their answer now, not at the hold timeout. */
        bool done =
            key ? strcmp(e->key, key) == 0
                : svc_state_held(e->svc) <= 0 || now >= e->linger_until_ms || !es_service(e);
        if (done)
            linger_unlink(c, e);
        e = next;
    }
}

static void on_es_delete(const void *item, void *arg)
{
    struct controller *c = arg;
    const struct es_cached *obj = item;
    struct es *e = es_find(c, obj->ns, obj->name);
    if (e) {
        strmap_del(&c->by_name, e->key);
        if (c->poll_cursor == e)
            c->poll_cursor = e->next;
        if (e->prev)
            e->prev->next = e->next;
        else
            c->list = e->next;
        if (e->next)
            e->next->prev = e->prev;
        /* callbacks in flight look it up by name and will not find it */
        if (e->svc && e->n_ports && svc_state_held(e->svc) > 0)
            es_linger(e);
        else
            es_free(e);
    }
    routes_schedule(c);
}

/* A Service or an EndpointSlice changed (its namespace and the Service it names, its
 * service-name label or else its name): routes, and possibly the serve switch. */
static void related_changed(struct controller *c, const char *ns, const char *svc)
{
    c->last_change_ns = clock_mono_ns();
    if (ns && svc) {
        char key[KEY_MAX];
        make_key(key, ns, svc);
        const struct pset *set = strmap_get(&c->by_service, key);
        for (size_t i = 0; set && i < set->n; i++) {
            routes_changed(set->v[i]);
            es_reconcile(set->v[i]);
        }
        /* A lingering route follows its Service too: its held requests go to the restored
         * pods once they are ready (out of by_service; a handful at most). */
        for (struct es *l = c->lingering; l; l = l->next) {
            if (l->spec.service && strcmp(l->ns, ns) == 0 && strcmp(l->spec.service, svc) == 0)
                routes_changed(l);
        }
    }
    routes_schedule(c);
}

/* The EndpointSlice cache is compact (struct slice_cached): its informer's codec. */
static void *slices_decode_item(const cJSON *obj, char *err, size_t errlen)
{
    return slices_decode(obj, err, errlen);
}

static void slices_free_item(void *item)
{
    slices_cached_free(item);
}

static const char *slice_rv(const void *item)
{
    return ((const struct slice_cached *)item)->resource_version;
}

static const char *slice_uid(const void *item)
{
    return ((const struct slice_cached *)item)->uid;
}

/* An EndpointSlice changed: its Service's routes (the slice's name when it names none). */
static void slice_changed(struct controller *c, const struct slice_cached *slice)
{
    related_changed(c, slice->ns, slice->service ? slice->service : slice->name);
}

/* Files an EndpointSlice under its Service (label kubernetes.io/service-name), or removes it. */
static void slice_index(struct controller *c, const struct slice_cached *slice, bool add)
{
    if (!slice->service)
        return;
    char key[KEY_MAX];
    make_key(key, slice->ns, slice->service);
    if (add)
        name_set_add(&c->slices_by_svc, key, slice->name);
    else
        free(pset_take(&c->slices_by_svc, key, same_str, slice->name));
}

static void on_slice_add(const void *obj, void *arg)
{
    slice_index(arg, obj, true);
    slice_changed(arg, obj);
}

static void on_slice_update(const void *old_item, const void *item, void *arg)
{
    const struct slice_cached *old = old_item, *obj = item;
    /* the service-name label may have changed: the slice then moves, and both Services hear */
    if (!old->service || !obj->service || strcmp(old->service, obj->service) != 0) {
        slice_index(arg, old, false);
        slice_index(arg, obj, true);
        if (old->service)
            slice_changed(arg, old);
    }
    slice_changed(arg, obj);
}

static void on_slice_delete(const void *obj, void *arg)
{
    slice_index(arg, obj, false);
    slice_changed(arg, obj);
}

/* The Service cache is compact too (struct service_cached): its codec. */
static void *service_decode_item(const cJSON *obj, char *err, size_t errlen)
{
    return service_decode(obj, err, errlen);
}

static void service_free_item(void *item)
{
    service_cached_free(item);
}

static const char *service_rv(const void *item)
{
    return ((const struct service_cached *)item)->resource_version;
}

static const char *service_uid(const void *item)
{
    return ((const struct service_cached *)item)->uid;
}

/* A Service changed: its ElastiServices' routes. */
static void on_svc_add(const void *obj, void *arg)
{
    const struct service_cached *svc = obj;
    related_changed(arg, svc->ns, svc->name);
}

static void on_svc_update(const void *old, const void *obj, void *arg)
{
    on_svc_add(obj, arg);
}

static void on_svc_delete(const void *obj, void *arg)
{
    on_svc_add(obj, arg);
}

/* The resolver's own pods changed: every resolver slice follows (leader). */
static void collect_resolvers(const cJSON *slice, void *arg)
{
    struct controller *c = arg;
    const cJSON *ep;
    cJSON_ArrayForEach(ep, json_get(slice, "endpoints"))
    {
        const cJSON *ready = json_get(json_get(ep, "conditions"), "ready");
        if (ready && !cJSON_IsTrue(ready))
            continue;
        const cJSON *a = cJSON_GetArrayItem(json_get(ep, "addresses"), 0);
        if (!cJSON_IsString(a))
            continue;
        struct resolver_ep *grown = realloc(c->resolvers, (c->n_resolvers + 1) * sizeof(*grown));
        if (!grown)
            return;
        c->resolvers = grown;
        struct resolver_ep *r = &c->resolvers[c->n_resolvers++];
        snprintf(r->ip, sizeof(r->ip), "%s", a->valuestring);
        const char *node = json_str(ep, "nodeName");
        snprintf(r->node, sizeof(r->node), "%s", node ? node : "");
    }
}

static void resolvers_changed(struct controller *c)
{
    free(c->resolvers);
    c->resolvers = NULL;
    c->n_resolvers = 0;
    if (c->inf_resolver) {
        informer_foreach(c->inf_resolver, collect_resolvers, c);
    } else if (c->opt.pod_ip) {
        c->resolvers = calloc(1, sizeof(*c->resolvers));
        if (c->resolvers) {
            c->n_resolvers = 1;
            snprintf(c->resolvers[0].ip, sizeof(c->resolvers[0].ip), "%s", c->opt.pod_ip);
            snprintf(c->resolvers[0].node, sizeof(c->resolvers[0].node), "%s",
                     c->opt.node_name ? c->opt.node_name : "");
        }
    }
    for (struct es *e = c->list; e && c->leader; e = e->next) {
        if (e->mode == ES_MODE_PROXY)
            resolver_slices_apply(e);
    }
}

static void on_res_add(const cJSON *obj, void *arg)
{
    resolvers_changed(arg);
}

static void on_res_update(const cJSON *old, const cJSON *obj, void *arg)
{
    resolvers_changed(arg);
}

static void on_res_delete(const cJSON *obj, void *arg)
{
    resolvers_changed(arg);
}

/* An informer synced (possibly with nothing in it): publish, so readiness can follow. */
static void on_synced(void *arg)
{
    routes_schedule(arg);
}

/* ---- the scale targets, watched ---- */

static const struct kube_resource RES_DEPLOY = {"apps", "v1", "deployments", true};
static const struct kube_resource RES_STS = {"apps", "v1", "statefulsets", true};
static const struct kube_resource RES_ROLLOUT = {"argoproj.io", "v1alpha1", "rollouts", true};

/*
 * Whether the workload's controller has acted on its latest spec and shows a ready replica and
 * none terminating (status.terminatingReplicas, Kubernetes 1.33 on; without it, ready replicas
 * only). *generation is metadata.generation (0 when absent). A Rollout's observedGeneration is
 * not a number: never steady, so its leaving pods wait LEAVING_MAX_MS.
 */
static bool workload_steady(const cJSON *obj, long long *generation)
{
    const cJSON *g = json_get(json_get(obj, "metadata"), "generation");
    const cJSON *st = json_get(obj, "status");
    const cJSON *seen = json_get(st, "observedGeneration"), *ready = json_get(st, "readyReplicas");
    const cJSON *term = json_get(st, "terminatingReplicas"),
                *r = json_get(json_get(obj, "spec"), "replicas");
    *generation = cJSON_IsNumber(g) ? (long long)g->valuedouble : 0;
    return *generation > 0 && cJSON_IsNumber(seen) && seen->valuedouble >= g->valuedouble &&
           (!cJSON_IsNumber(r) || r->valueint >= 1) && cJSON_IsNumber(ready) &&
           ready->valueint >= 1 && (!cJSON_IsNumber(term) || term->valueint == 0);
}

/*
 * The workload watch saw spec.replicas (leader). Zero is acted on at once: a hand scale to
 * zero switches to proxy mode within the watch's latency, however short it lasts (a poll
 * would see it only if it lasted past the next read). Replicas above zero are acted on only
 * after the watch itself showed zero: then the event is newer than that zero, whatever the
 * order of our own scale-down patch's answer and the watch (before it, an event still showing
 * the old count would switch back to serve). The polls cover everything else.
 */
/* Whether this replica acts on what the workload watch shows for e (it leads, e is managed). */
static bool es_follows_workload(const struct es *e)
{
    char why[256];
    return e->c->leader && !e->deleting && !e->spec_error && e->spec.target_ok &&
           !es_service_unsupported(e, why, sizeof(why));
}

static void es_watch_scale(struct es *e, int replicas)
{
    if (!es_follows_workload(e))
        return;
    if (replicas == 0) {
        if (!e->watch_zero)
            e->scale_epoch++;
        e->watch_zero = true;
        if (e->mode != ES_MODE_PROXY) {
            log_info("the target was scaled to 0 (seen by the workload watch)",
                     "elastiservice=%s target=%s", e->key, e->spec.target.name);
            if (!e->evaluated_ms) {
                /* a new ElastiService: its first /scale read would only repeat this; it waits
                 * for its phase of the interval (es_first_look) */
                e->evaluated_ms = clock_mono_ms();
                e->next_check_ms =
                    evaluate_next_check_at(e, e->evaluated_ms, e->c->opt.polling_interval_ms);
            }
            evaluate_apply_scale(e, 0, false);
        }
    } else if (e->watch_zero) {
        e->watch_zero = false;
        e->scale_epoch++;
        evaluate_apply_scale(e, replicas, false);
    }
}

/* The ElastiServices whose target obj is, or NULL. */
static const struct pset *workload_users(const struct workload_watch *w, const cJSON *obj)
{
    const cJSON *md = json_get(obj, "metadata");
    const char *ns = json_str(md, "namespace"), *name = json_str(md, "name");
    if (!ns || !name)
        return NULL;
    char key[TARGET_KEY_MAX];
    make_target_key(key, w->resource, ns, name);
    return strmap_get(&w->c->by_target, key);
}

const cJSON *es_pod_with_ip(const cJSON *pods, const char *ip)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, json_get(pods, "items"))
    {
        const cJSON *st = json_get(p, "status"), *a;
        const char *one = json_str(st, "podIP");
        if (one && strcmp(one, ip) == 0)
            return p;
        cJSON_ArrayForEach(a, json_get(st, "podIPs"))
        {
            one = json_str(a, "ip");
            if (one && strcmp(one, ip) == 0)
                return p;
        }
    }
    return NULL;
}

/*
 * The answer of leaving_check's pod list: a leaving address that is still a pod's which is not
 * being deleted and has not ended stays, and counts for the serve switch from now on. The others
 * are gone: they never count again while they are listed (leaving_prune forgets them once the
 * EndpointSlice controller stops listing them). replicas < 0: asked for by es_leaving_poll; the
 * next poll acts on the pods that stay.
 */
static void on_leaving_pods(cJSON *obj, const struct kube_error *err, void *arg)
{
    unsigned epoch = ((struct es_ref *)arg)->scale_epoch;
    int replicas = ((struct es_ref *)arg)->replicas;
    struct es *e = es_ref_take(arg);
    if (!e)
        return;
    e->leaving_check_inflight = false;
    if (epoch != e->leaving_epoch || !e->n_leaving)
        return; /* another proxy episode began, or the pods were settled meanwhile */
    if (err) {
        log_warn("cannot list the target's pods to tell whether the pods listed when proxy mode "
                 "began stay; they count for the serve switch once they are gone or after the "
                 "usual wait",
                 "elastiservice=%s error=%s message=%s", e->key, err->reason, err->message);
        return;
    }
    size_t kept = 0, stay = 0;
    for (size_t i = 0; i < e->n_leaving; i++) {
        const cJSON *pod = es_pod_with_ip(obj, e->leaving[i].ip);
        const char *phase = json_str(json_get(pod, "status"), "phase");
        if (!e->leaving[i].gone && pod &&
            !json_get(json_get(pod, "metadata"), "deletionTimestamp") &&
            !(phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0))) {
            stay++;
            continue;
        }
        e->leaving[i].gone = true;
        e->leaving[kept++] = e->leaving[i];
    }
    e->n_leaving = kept;
    if (!stay) {
        log_info("the pods listed when proxy mode began are gone or going: the serve switch waits "
                 "for another",
                 "elastiservice=%s leaving=%zu", e->key, kept);
        return;
    }
    if (e->mode != ES_MODE_PROXY || !es_follows_workload(e))
        return;
    log_info("the pods listed when proxy mode began stay: their pods are not being deleted",
             "elastiservice=%s stay=%zu", e->key, stay);
    if (replicas >= 0)
        evaluate_apply_scale(e, replicas, false);
}

/*
 * Asks the pods themselves which of the pods listed when proxy mode began stay: one list of the
 * target's pods (by e->wl_selector), answered by on_leaving_pods. Asked for when the workload is
 * steady with a ready replica at a generation newer than proxy mode's (workload_seen): either
 * the scale to zero was undone before the ReplicaSet controller removed the pods (they stay), or
 * the pods went and a wake made new ones. Its status cannot tell which (a wake's new pod is the
 * ready replica as well; CI caught the switch back to serve on the pod that had gone while the
 * EndpointSlice controller was behind). And before the wait for them is up (es_leaving_poll), so
 * that a pod gone is known gone when it ends. replicas: the workload's, acted on when pods stay
 * (< 0: by the next poll).
 */
static void leaving_check(struct es *e, int replicas)
{
    if (e->leaving_check_inflight || !e->wl_selector)
        return; /* the leaving pods count after LEAVING_MAX_MS, or once the slices drop them */
    struct es_ref *ref = es_ref_new(e);
    if (!ref)
        return;
    ref->scale_epoch = e->leaving_epoch;
    ref->replicas = replicas;
    struct kube_list_opts lo = {.label_selector = e->wl_selector};
    if (!kube_list(e->c->kube, &RES_POD, e->ns, &lo, on_leaving_pods, ref)) {
        es_ref_take(ref);
        return;
    }
    e->leaving_check_inflight = true;
}

/* How long before the wait for the leaving pods is up es_leaving_poll asks for their pods. */
#define LEAVING_ASK_AHEAD_MS 5000

void es_leaving_poll(struct es *e)
{
    if (!e->n_leaving)
        return;
    leaving_prune(e);
    if (e->mode != ES_MODE_PROXY || e->leaving_polled || !leaving_unsettled(e) ||
        clock_mono_ms() + LEAVING_ASK_AHEAD_MS < e->leaving_until_ms || !es_follows_workload(e))
        return;
    e->leaving_polled = true;
    leaving_check(e, -1);
}

/* Keeps e->wl_selector the workload's pod selector. */
static void workload_selector(struct es *e, const cJSON *workload)
{
    char sel[2048];
    if (target_label_selector(json_get(json_get(workload, "spec"), "selector"), sel, sizeof(sel)) !=
        0)
        return;
    if (e->wl_selector && strcmp(e->wl_selector, sel) == 0)
        return;
    free(e->wl_selector);
    e->wl_selector = xstrdup(sel);
    early_selector_changed(e);
}

/*
 * Every event of the workload watch: its generation and pod selector, and whether the pods
 * listed when proxy mode began may stay after all (the workload steady at a generation newer
 * than proxy mode's). leaving_check then asks their pods; those that stay count for the serve
 * switch at once, not only after LEAVING_MAX_MS, and those gone never do.
 */
static void workload_seen(const struct workload_watch *w, const cJSON *obj)
{
    const struct pset *set = workload_users(w, obj);
    long long generation;
    bool steady = workload_steady(obj, &generation);
    const cJSON *r = json_get(json_get(obj, "spec"), "replicas");
    int replicas = cJSON_IsNumber(r) ? r->valueint : 1;
    for (size_t i = 0; set && i < set->n; i++) {
        struct es *e = set->v[i];
        if (generation > e->wl_generation)
            e->wl_generation = generation;
        workload_selector(e, obj);
        if (!steady || !leaving_unsettled(e) || generation <= e->leaving_generation)
            continue;
        if (e->mode != ES_MODE_PROXY || !es_follows_workload(e))
            continue;
        leaving_check(e, replicas);
    }
}

static void workload_changed(const struct workload_watch *w, const cJSON *obj)
{
    workload_seen(w, obj);
    const struct pset *set = workload_users(w, obj);
    const cJSON *r = json_get(json_get(obj, "spec"), "replicas");
    int replicas = cJSON_IsNumber(r) ? r->valueint : 1; /* the API server's default */
    for (size_t i = 0; set && i < set->n; i++) {
        struct es *e = set->v[i];
        /* Any replica: requests it holds asked for the target, and someone scaled it back to
         * zero before they were answered (a hand right after their wake): wake it again, or
         * they wait for their hold timeout, since held clients send nothing more. */
        if (replicas == 0 && e->svc && svc_state_held(e->svc) > 0) {
            log_info("the target went to 0 while requests are held: waking it again",
                     "elastiservice=%s held=%ld", e->key, (long)svc_state_held(e->svc));
            wake_target(e);
        }
        es_watch_scale(e, replicas);
    }
}

static void on_wl_add(const cJSON *obj, void *arg)
{
    workload_changed(arg, obj);
}

static void on_wl_update(const cJSON *old, const cJSON *obj, void *arg)
{
    const cJSON *a = json_get(json_get(old, "spec"), "replicas"),
                *b = json_get(json_get(obj, "spec"), "replicas");
    if (cJSON_IsNumber(a) && cJSON_IsNumber(b) && a->valueint == b->valueint) {
        workload_seen(arg, obj); /* its generation and status only */
        return;
    }
    workload_changed(arg, obj);
}

/* A deleted workload: the next poll reports TargetNotFound. */
static const struct informer_handlers workload_handlers = {on_wl_add, on_wl_update, NULL, NULL};

static struct informer *workload_informer(struct controller *c, struct workload_watch *w,
                                          const struct kube_resource *res, const char *name)
{
    w->c = c;
    w->resource = res->resource;
    struct informer_opts io = {.res = *res,
                               .ns = c->opt.namespace_,
                               .name = name,
                               .transform = lean_workload,
                               .backoff_max_ms = INFORMER_BACKOFF_MAX_MS};
    return informer_new(c->kube, &io, &workload_handlers, w);
}

static void start_rollout_watch(struct controller *c)
{
    if (c->inf_rollout || c->opt.no_target_watch || !c->kube)
        return;
    c->inf_rollout = workload_informer(c, &c->wl_rollout, &RES_ROLLOUT, "rollouts");
    if (c->inf_rollout)
        informer_start(c->inf_rollout);
}

/* ---- leadership ---- */

static void on_started_leading(void *arg)
{
    struct controller *c = arg;
    c->leader = true;
    log_info("leading: this replica scales down and switches traffic", NULL);
    for (struct es *e = c->list; e; e = e->next)
        es_reconcile(e);
    resolvers_changed(c);
}

static void on_stopped_leading(void *arg)
{
    struct controller *c = arg;
    c->leader = false;
    for (struct es *e = c->list; e; e = e->next) {
        switch_cancel(e); /* the new leader finds serve mode and deletes the resolver slice */
        if (e->scaled_up_unwritten)
            es_status_sync(e, true); /* the new leader's cooldown reads it */
    }
    log_info("not leading any more: only wakes from here", NULL);
}

void controller_stop_leading(struct controller *c, void (*done)(bool released, void *arg),
                             void *arg)
{
    leader_release(c->election, done, arg);
}

/* ---- life ---- */

/* The API server answers again after an outage: every informer still waiting out its backoff
 * lists or watches now, so no cache stays behind for the rest of its backoff. */
static void on_api_back(void *arg)
{
    struct controller *c = arg;
    c->api_back_ms = clock_mono_ms();
    struct informer *all[] = {c->inf_es,     c->inf_svc, c->inf_slices, c->inf_resolver,
                              c->inf_deploy, c->inf_sts, c->inf_rollout};
    unsigned n = 0;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        n += all[i] && informer_retry_now(all[i]);
    if (n)
        log_info("the API server answers again: informers waiting out their backoff retry now",
                 "informers=%u", n);
    log_info("the API server answers again: no scale to zero begins for a while, the cluster "
             "catches up first",
             "settle_ms=%u", (unsigned)DECIDE_API_SETTLE_MS);
}

/* The resources holdfast_kube_api_requests_total counts requests by; any other is "other". */
static const char *const counted_resources[] = {
    "elastiservices", "elastiservices/status",
    "services",       "endpointslices",
    "deployments",    "deployments/scale",
    "statefulsets",   "statefulsets/scale",
    "rollouts",       "rollouts/scale",
    "scaledobjects",  "pods",
    "events",         "leases",
};
#define N_COUNTED (sizeof(counted_resources) / sizeof(counted_resources[0]))

struct controller *controller_start(struct event_base *base, struct dataplane *dp,
                                    const struct controller_opts *opts, char *err, size_t errlen)
{
    struct controller *c = calloc(1, sizeof(*c));
    if (!c) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    c->base = base;
    c->dp = dp;
    c->opt = *opts;
    if (!c->opt.polling_interval_ms)
        c->opt.polling_interval_ms = CONTROLLER_DEFAULT_POLLING_INTERVAL_MS;
    if (!c->opt.bind_address)
        c->opt.bind_address = CONTROLLER_DEFAULT_BIND_ADDRESS;
    if (!c->opt.port_min) {
        c->opt.port_min = CONTROLLER_DEFAULT_PORT_MIN;
        c->opt.port_max = CONTROLLER_DEFAULT_PORT_MAX;
    }
    if (ports_init(&c->ports, c->opt.port_min, c->opt.port_max) < 0) {
        snprintf(err, errlen, "out of memory");
        free(c);
        return NULL;
    }
    int rc = opts->kubeconfig ? kubeconfig_load_file(opts->kubeconfig, NULL, &c->kc, err, errlen)
                              : kubeconfig_load_incluster(NULL, &c->kc, err, errlen);
    if (rc < 0) {
        ports_free(&c->ports);
        free(c);
        return NULL;
    }
    if (opts->insecure_skip_tls_verify)
        c->kc->insecure = true; /* kube_client_new logs it, at every start */
    struct kube_client_opts ko = {.qps = opts->api_qps,
                                  .burst = opts->api_burst,
                                  .timeout_ms = opts->api_timeout_ms,
                                  .user_agent = CONTROLLER_USER_AGENT,
                                  .counted = counted_resources,
                                  .n_counted = N_COUNTED};
    c->kube = kube_client_new(base, c->kc, &ko, err, errlen);
    if (c->kube)
        c->kube_wake = kube_client_new(base, c->kc, &ko, err, errlen);
    c->http = http_client_new(base);
    c->prom = c->http ? prom_hub_new(base, c->http, opts->prometheus_max_inflight,
                                     c->opt.polling_interval_ms, evaluate_drop)
                      : NULL;
    c->publish_ev = evtimer_new(base, routes_on_publish, c);
    c->poll_ev = evtimer_new(base, evaluate_on_poll, c);
    c->wake_ev = event_new(base, -1, EV_PERSIST, wake_on_queue, c);
    c->wake_retry_ev = evtimer_new(base, wake_on_retry, c);
    c->relisten_ev = evtimer_new(base, routes_on_relisten, c);
    if (!c->kube || !c->kube_wake || !c->http || !c->prom || !c->publish_ev || !c->poll_ev ||
        !c->wake_ev || !c->wake_retry_ev || !c->relisten_ev) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        controller_free(c);
        return NULL;
    }
    dataplane_wake_notify(dp, c->wake_ev);

    struct informer_opts io = {.res = RES_ES,
                               .ns = opts->namespace_,
                               .name = "elastiservices",
                               .transform = lean_elastiservice,
                               .backoff_max_ms = INFORMER_BACKOFF_MAX_MS};
    static const struct informer_codec es_codec = {es_decode_item, es_free_item, es_rv, es_uid};
    struct informer_item_handlers hes = {.on_delete = on_es_delete,
                                         .on_synced = on_synced,
                                         .on_add_obj = on_es_add,
                                         .on_update_obj = on_es_update};
    c->inf_es = informer_new_compact(c->kube, &io, &es_codec, &hes, c);
    static const struct informer_codec svc_codec = {service_decode_item, service_free_item,
                                                    service_rv, service_uid};
    struct informer_item_handlers hsvc = {on_svc_add, on_svc_update, on_svc_delete,
                                          on_synced,  NULL,          NULL};
    io = (struct informer_opts){.res = RES_SVC,
                                .ns = opts->namespace_,
                                .name = "services",
                                .transform = lean_service,
                                .backoff_max_ms = INFORMER_BACKOFF_MAX_MS};
    c->inf_svc = informer_new_compact(c->kube, &io, &svc_codec, &hsvc, c);
    io = (struct informer_opts){.res = RES_SLICE,
                                .ns = opts->namespace_,
                                .name = "endpointslices",
                                .transform = lean_endpointslice,
                                .backoff_max_ms = INFORMER_BACKOFF_MAX_MS};
    static const struct informer_codec slice_codec = {slices_decode_item, slices_free_item,
                                                      slice_rv, slice_uid};
    struct informer_item_handlers hslice = {
        on_slice_add, on_slice_update, on_slice_delete, on_synced, NULL, NULL};
    c->inf_slices = informer_new_compact(c->kube, &io, &slice_codec, &hslice, c);
    if (opts->resolver_service) {
        char sel[300];
        snprintf(sel, sizeof(sel), "%s=%s", LABEL_SERVICE_NAME, opts->resolver_service);
        struct informer_handlers hres = {on_res_add, on_res_update, on_res_delete, on_synced};
        io = (struct informer_opts){.res = RES_SLICE,
                                    .ns = opts->resolver_namespace,
                                    .label_selector = sel,
                                    .name = "resolver-endpointslices",
                                    .transform = lean_endpointslice,
                                    .backoff_max_ms = INFORMER_BACKOFF_MAX_MS};
        c->inf_resolver = informer_new(c->kube, &io, &hres, c);
    }
    if (!opts->no_target_watch) {
        c->inf_deploy = workload_informer(c, &c->wl_deploy, &RES_DEPLOY, "deployments");
        c->inf_sts = workload_informer(c, &c->wl_sts, &RES_STS, "statefulsets");
    }
    if (!c->inf_es || !c->inf_svc || !c->inf_slices ||
        (opts->resolver_service && !c->inf_resolver) ||
        (!opts->no_target_watch && (!c->inf_deploy || !c->inf_sts))) {
        snprintf(err, errlen, "out of memory");
        controller_free(c);
        return NULL;
    }
    char host[256] = "holdfast";
    gethostname(host, sizeof(host) - 1);
    const char *identity = opts->pod_name ? opts->pod_name : host;
    struct events_opts eo = {.component = "holdfast", .instance = identity};
    c->events = events_new(c->kube, &eo);
    struct leader_opts lo = {
        .identity = identity,
        .ns = opts->lease_namespace      ? opts->lease_namespace
              : opts->resolver_namespace ? opts->resolver_namespace
                                         : "default",
        .name = opts->lease_name ? opts->lease_name : CONTROLLER_DEFAULT_LEASE_NAME,
        .disabled = !opts->leader_elect,
    };
    struct leader_callbacks lcb = {on_started_leading, on_stopped_leading, NULL, c};
    c->kube_lease = kube_client_new(base, c->kc, &ko, err, errlen);
    c->election = c->kube_lease ? leader_new(c->kube_lease, &lo, &lcb, err, errlen) : NULL;
    if (!c->events || !c->election) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        controller_free(c);
        return NULL;
    }
    kube_client_on_back(c->kube, on_api_back, c);
    kube_client_on_back(c->kube_wake, on_api_back, c);
    kube_client_on_back(c->kube_lease, on_api_back, c);
    resolvers_changed(c);
    leader_start(c->election);
    informer_start(c->inf_svc);
    informer_start(c->inf_slices);
    if (c->inf_resolver)
        informer_start(c->inf_resolver);
    if (c->inf_deploy)
        informer_start(c->inf_deploy);
    if (c->inf_sts)
        informer_start(c->inf_sts);
    informer_start(c->inf_es);
    c->round_start_ms = c->round_done_ms = clock_mono_ms();
    c->round_throttled = kube_client_throttled_seconds(c->kube);
    routes_schedule(c);
    struct timeval first = {1, 0};
    event_add(c->poll_ev, &first);
    log_info("controller started",
             "namespace=%s resolver_service=%s pod_ip=%s bind=%s "
             "port_min=%u port_max=%u polling_ms=%u",
             opts->namespace_ ? opts->namespace_ : "(all)",
             opts->resolver_service ? opts->resolver_service : "(none)",
             opts->pod_ip ? opts->pod_ip : "(none)", c->opt.bind_address, c->opt.port_min,
             c->opt.port_max, c->opt.polling_interval_ms);
    return c;
}

bool controller_ready(void *arg)
{
    const struct controller *c = arg;
    return c->routed;
}

bool controller_health(void *arg, char *why, size_t len)
{
    struct controller *c = arg;
    evaluate_liveness_update(c);
    if (!c->wedged_why[0])
        return true;
    snprintf(why, len, "%s", c->wedged_why);
    return false;
}

bool controller_idle(const struct controller *c)
{
    return kube_client_pending(c->kube) == 0 && kube_client_pending(c->kube_wake) == 0;
}

/* holdfast_kube_api_requests_total: every request sent, by client, verb and resource (a fixed
 * set: at most 3 x 7 x 15 series, only those seen). */
static void kube_requests_metric(struct mtext *out, const struct controller *c)
{
    static const char *const names[] = {"main", "wake", "lease"};
    const struct kube_client *clients[] = {c->kube, c->kube_wake, c->kube_lease};
    mtext_family(out, "holdfast_kube_api_requests_total", "counter",
                 "Kubernetes API requests sent, by client, verb and resource (a watch counts "
                 "when it connects).");
    for (size_t k = 0; k < 3; k++) {
        for (int v = 0; v < KUBE_VERB_COUNT; v++) {
            for (size_t r = 0; r <= N_COUNTED; r++) {
                unsigned long long n = kube_client_requests(clients[k], v, r);
                if (!n)
                    continue;
                char labels[160];
                snprintf(labels, sizeof(labels), "client=\"%s\",verb=\"%s\",resource=\"%s\"",
                         names[k], kube_verb_name(v),
                         r < N_COUNTED ? counted_resources[r] : "other");
                mtext_sample(out, "holdfast_kube_api_requests_total", labels, (double)n);
            }
        }
    }
}

void controller_metrics(struct mtext *out, void *arg)
{
    struct controller *c = arg;
    mtext_family(out, "holdfast_controller_reconciles_total", "counter",
                 "ElastiService reconciles.");
    mtext_sample(out, "holdfast_controller_reconciles_total", NULL, (double)c->reconciles);
    mtext_family(out, "holdfast_controller_reconcile_errors_total", "counter",
                 "Reconciles that found an invalid spec.");
    mtext_sample(out, "holdfast_controller_reconcile_errors_total", NULL,
                 (double)c->reconcile_errors);
    mtext_family(out, "holdfast_controller_evaluations_total", "counter",
                 "ElastiService evaluations by the polls (the target's scale read, or a skip "
                 "whose reason is logged).");
    mtext_sample(out, "holdfast_controller_evaluations_total", NULL, (double)c->evaluations);
    mtext_family(out, "holdfast_controller_round_age_seconds", "gauge",
                 "Seconds since this replica last completed a full evaluation round (every "
                 "ElastiService evaluated once).");
    mtext_sample(out, "holdfast_controller_round_age_seconds", NULL,
                 (double)(clock_mono_ms() - c->round_done_ms) / 1000.0);
    mtext_family(out, "holdfast_controller_round_throttled_seconds", "gauge",
                 "Of holdfast_controller_round_age_seconds, the seconds the API rate limiter "
                 "accounts for (calls that waited for a token and were answered, 1/qps each): "
                 "they do not count against the liveness bound.");
    mtext_sample(out, "holdfast_controller_round_throttled_seconds", NULL,
                 evaluate_throttled_ms(c, c->round_throttled) / 1000.0);
    mtext_family(out, "holdfast_controller_liveness_bound_seconds", "gauge",
                 "How much older than holdfast_controller_round_throttled_seconds the last "
                 "complete round may get before /healthz fails.");
    mtext_sample(out, "holdfast_controller_liveness_bound_seconds", NULL,
                 (double)evaluate_liveness_bound_ms(c) / 1000.0);
    mtext_family(out, "holdfast_route_services_built_total", "counter",
                 "Service routes built for route snapshots: one per ElastiService whose "
                 "ElastiService, Service, EndpointSlices or not-ready reason changed; the rest "
                 "are shared with the snapshot before.");
    mtext_sample(out, "holdfast_route_services_built_total", NULL, (double)c->routes_built);
    mtext_family(out, "holdfast_controller_spec_parses_total", "counter",
                 "ElastiService specs parsed (triggers and probe rules built): once per "
                 "generation of each, not per informer event.");
    mtext_sample(out, "holdfast_controller_spec_parses_total", NULL, (double)c->spec_parses);
    mtext_family(out, "holdfast_prometheus_query_errors_total", "counter",
                 "Prometheus queries that failed or gave no usable value.");
    mtext_sample(out, "holdfast_prometheus_query_errors_total", NULL, (double)c->prom_errors);
    struct prom_hub_stats ps;
    prom_hub_stats(c->prom, &ps);
    mtext_family(out, "holdfast_prometheus_queries_total", "counter",
                 "Queries sent to Prometheus (trigger queries and uptime checks): one per "
                 "distinct query per polling interval, however many ElastiServices ask it.");
    mtext_sample(out, "holdfast_prometheus_queries_total", NULL, (double)ps.sent);
    mtext_family(out, "holdfast_prometheus_answers_shared_total", "counter",
                 "Trigger queries and uptime checks of an ElastiService answered by a query "
                 "sent for another (or for one of its other triggers).");
    mtext_sample(out, "holdfast_prometheus_answers_shared_total", NULL, (double)ps.shared);
    mtext_family(out, "holdfast_prometheus_queries_queued", "gauge",
                 "Queries waiting because --prometheus-max-concurrent are in flight to their "
                 "server.");
    mtext_sample(out, "holdfast_prometheus_queries_queued", NULL, (double)ps.queued);
    mtext_family(out, "holdfast_scale_ups_total", "counter", "Targets scaled up from zero.");
    mtext_sample(out, "holdfast_scale_ups_total", NULL, (double)c->wakes_sent);
    mtext_family(out, "holdfast_wake_raises_total", "counter",
                 "Woken targets scaled further up while their pods started, as held "
                 "connections grew (spec.podCapacity).");
    mtext_sample(out, "holdfast_wake_raises_total", NULL, (double)c->wake_raises);
    mtext_family(out, "holdfast_early_probes_total", "counter",
                 "Probes early readiness ran against woken pods (their own readinessProbe and "
                 "startupProbe), by result.");
    mtext_sample(out, "holdfast_early_probes_total", "result=\"success\"",
                 (double)c->early_probes[1]);
    mtext_sample(out, "holdfast_early_probes_total", "result=\"failure\"",
                 (double)c->early_probes[0]);
    mtext_family(out, "holdfast_early_ready_pods_total", "counter",
                 "Woken pods that passed early readiness before the kubelet marked them Ready: "
                 "held connections went to them.");
    mtext_sample(out, "holdfast_early_ready_pods_total", NULL, (double)c->early_ready_pods);
    mtext_family(out, "holdfast_early_readiness_fallbacks_total", "counter",
                 "Woken pods left to the kubelet's readiness probe, by reason (disabled: a wake "
                 "of an ElastiService with earlyReadiness off).");
    for (int f = EARLY_FALLBACK_EXEC; f < EARLY_FALLBACK_N; f++) {
        char label[48];
        snprintf(label, sizeof(label), "reason=\"%s\"", early_fallback_label(f));
        mtext_sample(out, "holdfast_early_readiness_fallbacks_total", label,
                     (double)c->early_fallbacks[f]);
    }
    mtext_family(out, "holdfast_cold_start_phase_seconds", "histogram",
                 "Cold starts recorded by this replica (the leader's view), by phase: the time "
                 "from the phase known before it (or the first held request) to it, so the "
                 "phases of one cold start add up to its total.");
    for (int p = COLD_SCALE_SENT; p < COLD_N; p++) {
        char label[48];
        snprintf(label, sizeof(label), "phase=\"%s\"", coldstart_phase_label(p));
        mtext_hist(out, "holdfast_cold_start_phase_seconds", label, &c->cold_phase_seconds[p]);
    }
    mtext_family(out, "holdfast_wake_with_scale_ups_total", "counter",
                 "spec.wakeWith workloads scaled up from zero with their target.");
    mtext_sample(out, "holdfast_wake_with_scale_ups_total", NULL, (double)c->wakewith_scaled);
    mtext_family(out, "holdfast_scale_downs_total", "counter", "Services switched to proxy mode.");
    mtext_sample(out, "holdfast_scale_downs_total", NULL, (double)c->scale_downs);
    mtext_family(out, "holdfast_scale_downs_abandoned_total", "counter",
                 "Scale-downs given up because the Service's traffic was not shown to reach "
                 "holdfast within the probe timeout.");
    mtext_sample(out, "holdfast_scale_downs_abandoned_total", NULL, (double)c->abandoned);
    mtext_family(out, "holdfast_serve_switches_total", "counter",
                 "Services switched back to serve mode.");
    mtext_sample(out, "holdfast_serve_switches_total", NULL, (double)c->switches);
    mtext_family(out, "holdfast_leader", "gauge", "1 when this replica leads.");
    mtext_sample(out, "holdfast_leader", NULL, c->leader ? 1 : 0);
    mtext_family(out, "holdfast_kube_api_queued", "gauge",
                 "API calls waiting for a token of the client-side rate limiter, by client.");
    mtext_sample(out, "holdfast_kube_api_queued", "client=\"main\"",
                 (double)kube_client_queued(c->kube));
    mtext_sample(out, "holdfast_kube_api_queued", "client=\"wake\"",
                 (double)kube_client_queued(c->kube_wake));
    mtext_sample(out, "holdfast_kube_api_queued", "client=\"lease\"",
                 (double)kube_client_queued(c->kube_lease));
    kube_requests_metric(out, c);
}

const void *controller_cached(const struct controller *c, const char *resource, const char *ns,
                              const char *name)
{
    if (strcmp(resource, "endpointslices") == 0)
        return informer_get_item(c->inf_slices, ns, name);
    if (strcmp(resource, "services") == 0)
        return informer_get_item(c->inf_svc, ns, name);
    return strcmp(resource, "elastiservices") == 0 ? informer_get_item(c->inf_es, ns, name) : NULL;
}

void controller_free(struct controller *c)
{
    if (!c)
        return;
    leader_free(c->election);
    events_free(c->events);
    informer_free(c->inf_es);
    informer_free(c->inf_svc);
    informer_free(c->inf_slices);
    informer_free(c->inf_resolver);
    informer_free(c->inf_deploy);
    informer_free(c->inf_sts);
    informer_free(c->inf_rollout);
    while (c->list) {
        struct es *e = c->list;
        c->list = e->next;
        es_free(e);
    }
    while (c->lingering) {
        struct es *e = c->lingering;
        c->lingering = e->next;
        es_free(e);
    }
    strmap_clear(&c->by_name);
    strmap_each(&c->by_service, free_pset, NULL);
    strmap_clear(&c->by_service);
    strmap_each(&c->by_target, free_pset, NULL);
    strmap_clear(&c->by_target);
    strmap_each(&c->slices_by_svc, free_pset, c); /* names are owned */
    strmap_clear(&c->slices_by_svc);
    ports_free(&c->ports);
    if (c->publish_ev)
        event_free(c->publish_ev);
    if (c->poll_ev)
        event_free(c->poll_ev);
    if (c->wake_ev) {
        dataplane_wake_notify(c->dp, NULL);
        event_free(c->wake_ev);
    }
    if (c->wake_retry_ev)
        event_free(c->wake_retry_ev);
    if (c->relisten_ev)
        event_free(c->relisten_ev);
    prom_hub_free(c->prom); /* before its http client */
    http_client_free(c->http);
    kube_client_free(c->kube_lease);
    kube_client_free(c->kube_wake);
    kube_client_free(c->kube);
    kubeconfig_free(c->kc);
    free(c->resolvers);
    for (size_t i = 0; i < c->n_gone; i++)
        route_service_unref(c->gone[i].route);
    free(c->gone);
    free(c->free_slots);
    route_snapshot_unref(c->snap);
    free(c);
}
