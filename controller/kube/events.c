/*
 * events: Kubernetes Event recorder with client-go style aggregation (see events.h).
 *
 * The cache is a strmap on the aggregation key, its entries threaded on an LRU list.
 * Each entry keeps the Event as created, so a patch answered NotFound can create it again. A
 * write in flight is an `ev_op`; an entry evicted while its write is in flight leaves the op
 * orphaned (op->entry NULL), and the answer is then only counted.
 */
#include "controller/kube/events.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/strmap.h"
#include "common/xalloc.h"
#include "controller/kube/kube.h"

#define EVENTS_MAX_IN_FLIGHT 256
#define EVENTS_LOG_INTERVAL_MS 10000

static const struct kube_resource event_res = {"", "v1", "events", true};

struct ev_op;

/* One Event written (or being written), keyed by (object, type, reason, message). */
struct ev_entry {
    char *key;              /* the aggregation key */
    struct ev_entry *newer; /* LRU neighbours: newer toward head */
    struct ev_entry *older; /* ... older toward tail (evicted first) */
    cJSON *body;            /* the Event as created (name, namespace, first timestamp) */
    long count;             /* occurrences this Event stands for */
    long long last_ms;      /* monotonic ms of the last occurrence (the window) */
    long long last_unix;    /* wall second of the last occurrence (lastTimestamp) */
    struct ev_op *op;       /* the write in flight, or NULL */
    bool dirty;             /* occurrences arrived while op was in flight: patch after it */
};

enum ev_op_kind {
    OP_CREATE,
    OP_PATCH,
};

/* A write in flight. */
struct ev_op {
    struct events *ev;
    struct ev_entry *entry; /* NULL once the entry was evicted or replaced */
    struct kube_call *call;
    enum ev_op_kind kind;
    char name[EVENTS_NAME_MAX + 1]; /* the Event written, for messages */
    char ns[254];                   /* its namespace */
    struct ev_op *prev, *next;      /* every op in flight, for events_free */
};

struct events {
    struct kube_client *client;
    struct event_base *base;
    char *component;
    char *controller;
    char *instance;
    size_t capacity;                /* cache entries at most */
    long long window_ms;            /* aggregation window */
    struct strmap index;            /* aggregation key -> struct ev_entry */
    struct ev_entry *newest;        /* LRU head */
    struct ev_entry *oldest;        /* LRU tail */
    struct ev_op *ops;              /* writes in flight */
    unsigned long long last_unique; /* last name suffix handed out */
    struct events_stats st;
    long long last_log_ms;     /* when a failure was last logged */
    unsigned long unlogged;    /* failures not logged since */
    struct event *flush_timer; /* events_flush: timeout, or the deferred callback */
    events_flushed_fn flush_cb;
    void *flush_arg;
};

int events_name(const char *name, unsigned long long unique, char *buf, size_t len)
{
    const size_t suffix = 17; /* ".%016llx" */
    size_t n = strlen(name);
    if (n > EVENTS_NAME_MAX - suffix)
        n = EVENTS_NAME_MAX - suffix;
    /* A cut can leave "-" or "." before our dot, which is not a valid DNS subdomain. */
    while (n > 0 && (name[n - 1] == '-' || name[n - 1] == '.'))
        n--;
    if (len < n + suffix + 1)
        return -1;
    snprintf(buf, len, "%.*s.%016llx", (int)n, name, unique);
    return 0;
}

size_t events_truncate_utf8(char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return n;
    n = max;
    /* Back off continuation bytes (10xxxxxx) so the cut lands on a character start. */
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
        n--;
    s[n] = '\0';
    return n;
}

/* At most one warning per EVENTS_LOG_INTERVAL_MS; the others are counted and reported with the
 * next one, so a dead API server does not flood the log. */
static void log_failure(struct events *ev, const char *what, const char *name,
                        const struct kube_error *err)
{
    ev->st.failed += err ? 1 : 0;
    long long now = (long long)clock_mono_ms();
    if (ev->last_log_ms && now - ev->last_log_ms < EVENTS_LOG_INTERVAL_MS) {
        ev->unlogged++;
        return;
    }
    ev->last_log_ms = now;
    log_warn(what, "event=%s code=%s http=%ld message=%s unlogged_since_last=%lu", name,
             err ? kube_err_name(err->code) : "none", err ? err->http : 0L, err ? err->message : "",
             ev->unlogged);
    ev->unlogged = 0;
}

/* --------------------------------------------------------------- cache */

static void lru_unlink(struct events *ev, struct ev_entry *e)
{
    if (e->newer)
        e->newer->older = e->older;
    else
        ev->newest = e->older;
    if (e->older)
        e->older->newer = e->newer;
    else
        ev->oldest = e->newer;
    e->newer = e->older = NULL;
}

static void lru_push(struct events *ev, struct ev_entry *e)
{
    e->older = ev->newest;
    e->newer = NULL;
    if (ev->newest)
        ev->newest->newer = e;
    ev->newest = e;
    if (!ev->oldest)
        ev->oldest = e;
}

static void entry_free(struct ev_entry *e)
{
    if (e->op)
        e->op->entry = NULL;
    cJSON_Delete(e->body);
    free(e->key);
    free(e);
}

static void cache_remove(struct events *ev, struct ev_entry *e)
{
    strmap_del(&ev->index, e->key);
    lru_unlink(ev, e);
    ev->st.cached--;
    entry_free(e);
}

/* Takes key (freed with the entry); on failure the caller keeps it. */
static struct ev_entry *cache_add(struct events *ev, char *key)
{
    if (ev->st.cached >= ev->capacity && ev->oldest)
        cache_remove(ev, ev->oldest);
    struct ev_entry *e = xcalloc(1, sizeof(*e));
    if (strmap_put(&ev->index, key, e) != 0) {
        free(e);
        return NULL;
    }
    e->key = key;
    lru_push(ev, e);
    ev->st.cached++;
    return e;
}

/* --------------------------------------------------------------- writes */

static void op_unlink(struct events *ev, struct ev_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        ev->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
    ev->st.in_flight--;
}

static void maybe_flushed(struct events *ev)
{
    if (ev->flush_cb && ev->st.in_flight == 0) {
        struct timeval zero = {0, 0};
        event_add(ev->flush_timer, &zero);
    }
}

static void op_done(cJSON *obj, const struct kube_error *err, void *arg);

static struct ev_op *op_start(struct events *ev, struct ev_entry *e, enum ev_op_kind kind,
                              const cJSON *body)
{
    if (ev->st.in_flight >= EVENTS_MAX_IN_FLIGHT)
        return NULL;
    struct ev_op *op = xcalloc(1, sizeof(*op));
    op->ev = ev;
    op->entry = e;
    op->kind = kind;
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(e->body, "metadata");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(md, "name");
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(md, "namespace");
    snprintf(op->name, sizeof(op->name), "%s", cJSON_IsString(name) ? name->valuestring : "");
    snprintf(op->ns, sizeof(op->ns), "%s", cJSON_IsString(ns) ? ns->valuestring : "");
    op->call = kind == OP_CREATE ? kube_create(ev->client, &event_res, op->ns, body, op_done, op)
                                 : kube_patch(ev->client, &event_res, op->ns, op->name, NULL,
                                              KUBE_PATCH_MERGE, body, op_done, op);
    if (!op->call) {
        free(op);
        return NULL;
    }
    op->next = ev->ops;
    if (ev->ops)
        ev->ops->prev = op;
    ev->ops = op;
    ev->st.in_flight++;
    e->op = op;
    return op;
}

static unsigned long long unique_suffix(struct events *ev)
{
    unsigned long long u = clock_wall_ns();
    if (u <= ev->last_unique)
        u = ev->last_unique + 1;
    ev->last_unique = u;
    return u;
}

/* Gives e->body a fresh name, count 1 and first/last timestamps of the last occurrence. */
static void renew_body(struct events *ev, struct ev_entry *e, const char *object_name)
{
    char name[EVENTS_NAME_MAX + 1], ts[CLOCK_RFC3339_MAX];
    if (events_name(object_name, unique_suffix(ev), name, sizeof(name)) != 0)
        name[0] = '\0';
    clock_rfc3339_format(ts, sizeof(ts), e->last_unix, 0, 0);
    cJSON *md = cJSON_GetObjectItemCaseSensitive(e->body, "metadata");
    cJSON_ReplaceItemInObjectCaseSensitive(md, "name", cJSON_CreateString(name));
    cJSON_ReplaceItemInObjectCaseSensitive(e->body, "firstTimestamp", cJSON_CreateString(ts));
    cJSON_ReplaceItemInObjectCaseSensitive(e->body, "lastTimestamp", cJSON_CreateString(ts));
    cJSON_ReplaceItemInObjectCaseSensitive(e->body, "count", cJSON_CreateNumber(1));
    e->count = 1;
    e->dirty = false;
}

static const char *involved_name(const struct ev_entry *e)
{
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(e->body, "involvedObject"), "name");
    return cJSON_IsString(n) ? n->valuestring : "";
}

static int send_create(struct events *ev, struct ev_entry *e)
{
    if (op_start(ev, e, OP_CREATE, e->body))
        return 0;
    ev->st.dropped++;
    log_failure(ev, "event dropped: too many writes in flight", "", NULL);
    return -1;
}

static int send_patch(struct events *ev, struct ev_entry *e)
{
    char ts[CLOCK_RFC3339_MAX];
    clock_rfc3339_format(ts, sizeof(ts), e->last_unix, 0, 0);
    cJSON *patch = cJSON_CreateObject();
    cJSON_AddNumberToObject(patch, "count", (double)e->count);
    cJSON_AddStringToObject(patch, "lastTimestamp", ts);
    struct ev_op *op = op_start(ev, e, OP_PATCH, patch);
    cJSON_Delete(patch);
    if (op)
        return 0;
    /* The count stays in the entry: the next patch that goes out carries it. */
    ev->st.dropped++;
    log_failure(ev, "event count update dropped: too many writes in flight", "", NULL);
    return -1;
}

static void op_done(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct ev_op *op = arg;
    struct events *ev = op->ev;
    struct ev_entry *e = op->entry;
    op_unlink(ev, op);
    if (e)
        e->op = NULL;
    if (op->kind == OP_CREATE) {
        if (err) {
            log_failure(ev, "event not created", op->name, err);
            if (e)
                cache_remove(ev, e); /* the next occurrence creates it */
        } else {
            ev->st.created++;
            log_debug("event created", "event=%s namespace=%s", op->name, op->ns);
            if (e && e->dirty) {
                e->dirty = false;
                send_patch(ev, e);
            }
        }
    } else if (err && err->code == KUBE_ERR_NOT_FOUND) {
        /* The Event expired (the API server's event TTL) or was deleted: start a new one. */
        ev->st.recreated++;
        if (e) {
            renew_body(ev, e, involved_name(e));
            send_create(ev, e);
        }
    } else if (err) {
        log_failure(ev, "event count not updated", op->name, err);
        if (e)
            e->dirty = false;
    } else {
        ev->st.patched++;
        if (e && e->dirty) {
            e->dirty = false;
            send_patch(ev, e);
        }
    }
    free(op);
    maybe_flushed(ev);
}

/* --------------------------------------------------------------- recording */

static cJSON *build_event(struct events *ev, const struct events_object *obj, const char *type,
                          const char *reason, const char *message)
{
    const char *ns = obj->ns && obj->ns[0] ? obj->ns : "default";
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "apiVersion", "v1");
    cJSON_AddStringToObject(b, "kind", "Event");
    cJSON *md = cJSON_AddObjectToObject(b, "metadata");
    cJSON_AddStringToObject(md, "name", "");
    cJSON_AddStringToObject(md, "namespace", ns);
    cJSON *io = cJSON_AddObjectToObject(b, "involvedObject");
    cJSON_AddStringToObject(io, "apiVersion", obj->api_version);
    cJSON_AddStringToObject(io, "kind", obj->kind);
    if (obj->ns && obj->ns[0])
        cJSON_AddStringToObject(io, "namespace", obj->ns);
    cJSON_AddStringToObject(io, "name", obj->name);
    if (obj->uid && obj->uid[0])
        cJSON_AddStringToObject(io, "uid", obj->uid);
    if (obj->resource_version && obj->resource_version[0])
        cJSON_AddStringToObject(io, "resourceVersion", obj->resource_version);
    cJSON_AddStringToObject(b, "type", type);
    cJSON_AddStringToObject(b, "reason", reason);
    cJSON_AddStringToObject(b, "message", message);
    cJSON *src = cJSON_AddObjectToObject(b, "source");
    cJSON_AddStringToObject(src, "component", ev->component);
    cJSON_AddStringToObject(src, "host", ev->instance);
    cJSON_AddStringToObject(b, "firstTimestamp", "");
    cJSON_AddStringToObject(b, "lastTimestamp", "");
    cJSON_AddNumberToObject(b, "count", 1);
    cJSON_AddStringToObject(b, "reportingComponent", ev->controller);
    cJSON_AddStringToObject(b, "reportingInstance", ev->instance);
    return b;
}

int events_record(struct events *ev, const struct events_object *obj, enum events_type type,
                  const char *reason, const char *fmt, ...)
{
    if (!obj || !obj->api_version || !obj->kind || !obj->name || !obj->name[0] || !reason ||
        !reason[0]) {
        log_warn("event dropped: no involved object or reason", "reason=%s", reason);
        ev->st.dropped++;
        return -1;
    }
    char message[EVENTS_MESSAGE_MAX + 8];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    events_truncate_utf8(message, EVENTS_MESSAGE_MAX);
    const char *tname = type == EVENTS_WARNING ? "Warning" : "Normal";

    size_t klen = strlen(message) + strlen(reason) + strlen(obj->kind) + strlen(obj->name) +
                  (obj->ns ? strlen(obj->ns) : 0) + (obj->uid ? strlen(obj->uid) : 0) + 16;
    char *key = malloc(klen);
    if (!key) {
        ev->st.dropped++;
        return -1;
    }
    /* The uid tells a recreated object from its predecessor; without one, kind/ns/name. */
    if (obj->uid && obj->uid[0])
        snprintf(key, klen, "%s\n%s\n%s\n%s", obj->uid, tname, reason, message);
    else
        snprintf(key, klen, "%s/%s/%s\n%s\n%s\n%s", obj->kind, obj->ns ? obj->ns : "", obj->name,
                 tname, reason, message);
    long long now = (long long)clock_mono_ms();
    struct ev_entry *e = strmap_get(&ev->index, key);
    if (e && now - e->last_ms < ev->window_ms) {
        free(key);
        lru_unlink(ev, e);
        lru_push(ev, e);
        e->count++;
        e->last_ms = now;
        e->last_unix = clock_wall_s();
        if (e->op) {
            e->dirty = true;
            return 0;
        }
        return send_patch(ev, e);
    }
    if (e) {
        /* Outside the window: a new Event in the same entry; a write still in flight for the
         * old one ends unattended. */
        free(key);
        if (e->op)
            e->op->entry = NULL;
        e->op = NULL;
        cJSON_Delete(e->body);
        lru_unlink(ev, e);
        lru_push(ev, e);
    } else {
        e = cache_add(ev, key);
        if (!e) {
            free(key);
            ev->st.dropped++;
            return -1;
        }
    }
    e->body = build_event(ev, obj, tname, reason, message);
    e->last_ms = now;
    e->last_unix = clock_wall_s();
    renew_body(ev, e, obj->name);
    if (send_create(ev, e) != 0) {
        cache_remove(ev, e);
        return -1;
    }
    return 0;
}

/* --------------------------------------------------------------- lifecycle */

static void on_flush_timer(evutil_socket_t fd, short what, void *arg)
{
    struct events *ev = arg;
    events_flushed_fn cb = ev->flush_cb;
    ev->flush_cb = NULL;
    if (cb)
        cb(ev->st.in_flight == 0, ev->flush_arg);
}

void events_flush(struct events *ev, long timeout_ms, events_flushed_fn done, void *arg)
{
    ev->flush_cb = done;
    ev->flush_arg = arg;
    long ms = ev->st.in_flight == 0 ? 0 : timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(ev->flush_timer, &tv);
}

void events_get_stats(const struct events *ev, struct events_stats *out)
{
    *out = ev->st;
}

struct events *events_new(struct kube_client *c, const struct events_opts *o)
{
    if (!o || !o->component || !o->component[0])
        return NULL;
    struct events *ev = xcalloc(1, sizeof(*ev));
    char host[256] = "";
    if (!o->instance || !o->instance[0]) {
        if (gethostname(host, sizeof(host) - 1) != 0 || !host[0])
            snprintf(host, sizeof(host), "unknown");
    }
    ev->client = c;
    ev->base = kube_client_base(c);
    ev->component = xstrdup(o->component);
    ev->controller =
        xstrdup(o->reporting_controller && o->reporting_controller[0] ? o->reporting_controller
                                                                      : o->component);
    ev->instance = xstrdup(o->instance && o->instance[0] ? o->instance : host);
    ev->capacity = o->cache_size > 0 ? o->cache_size : 4096;
    ev->window_ms = (o->window_s > 0 ? o->window_s : 600) * 1000LL;
    ev->flush_timer = evtimer_new(ev->base, on_flush_timer, ev);
    if (!ev->flush_timer) {
        events_free(ev);
        return NULL;
    }
    return ev;
}

void events_free(struct events *ev)
{
    if (!ev)
        return;
    /* Entries first: entry_free detaches each from its op, so the ops can go after. */
    for (struct ev_entry *e = ev->oldest, *newer; e; e = newer) {
        newer = e->newer;
        entry_free(e);
    }
    ev->oldest = ev->newest = NULL;
    while (ev->ops) {
        struct ev_op *op = ev->ops;
        ev->ops = op->next;
        kube_call_cancel(op->call);
        free(op);
    }
    if (ev->flush_timer)
        event_free(ev->flush_timer);
    strmap_clear(&ev->index);
    free(ev->component);
    free(ev->controller);
    free(ev->instance);
    free(ev);
}
