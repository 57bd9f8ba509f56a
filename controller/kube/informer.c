/*
 * informer: list-then-watch cache with handlers. See informer.h.
 *
 * States: LISTING (pages accumulate in `next`) -> WATCHING -> (stream end) WATCHING again,
 * (410) LISTING, (error) WAITING on the backoff timer -> LISTING or WATCHING. `need_list` says
 * which one a retry goes back to.
 */
#include "controller/kube/informer.h"

#include <assert.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/key.h"
#include "common/log.h"
#include "common/strmap.h"
#include "common/xalloc.h"

/* A watch that lived this long was healthy: the next failure starts the backoff afresh. */
#define INFORMER_HEALTHY_S 5

/* ---- the store: a chained hash table of "namespace/name" -> object ---- */

/* How a store frees what it holds: cJSON_Delete, or a codec's free. */
typedef void (*item_free_fn)(void *item);

static void json_free(void *obj)
{
    cJSON_Delete(obj);
}

/* The store: a strmap from "ns/name" (or "name") to the object it owns, a cJSON object or a
 * compact cache's item. */

/* Inserts a new key (must be absent). Takes obj. Returns 0, or -1 (obj freed). */
static int store_insert(struct strmap *s, const char *key, void *obj, item_free_fn fr)
{
    if (strmap_put(s, key, obj) != 0) {
        fr(obj);
        return -1;
    }
    return 0;
}

static void store_clear(struct strmap *s, item_free_fn fr)
{
    const char *key;
    void *obj;
    for (size_t pos = 0; strmap_next(s, &pos, &key, &obj);)
        fr(obj);
    strmap_clear(s);
}

/* A list in progress, page by page: its objects in the order the API server listed them (so
 * apply_list hands them to the handlers in that order), and the set of their keys. */
struct listing {
    struct strmap keys; /* key -> the item's index + 1 */
    struct listed {
        char *key;
        void *obj; /* owned; NULL once apply_list took it */
    } * items;
    size_t n, cap;
};

/* Appends key (must be absent) and takes obj. Returns 0, or -1 (obj freed). */
static int listing_add(struct listing *l, const char *key, void *obj, item_free_fn fr)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        struct listed *items = realloc(l->items, cap * sizeof(*items));
        if (!items) {
            fr(obj);
            return -1;
        }
        l->items = items;
        l->cap = cap;
    }
    char *copy = strdup(key);
    if (!copy || strmap_put(&l->keys, key, (void *)(uintptr_t)(l->n + 1)) != 0) {
        free(copy);
        fr(obj);
        return -1;
    }
    l->items[l->n++] = (struct listed){.key = copy, .obj = obj};
    return 0;
}

static bool listing_has(const struct listing *l, const char *key)
{
    return strmap_get(&l->keys, key) != NULL;
}

static void listing_clear(struct listing *l, item_free_fn fr)
{
    for (size_t i = 0; i < l->n; i++) {
        if (l->items[i].obj)
            fr(l->items[i].obj);
        free(l->items[i].key);
    }
    free(l->items);
    strmap_clear(&l->keys);
    *l = (struct listing){0};
}

/* ---- the informer ---- */

struct informer {
    struct kube_client *kc;
    struct kube_resource res;
    char *ns, *label, *field, *name; /* owned copies of the options */
    long page_size;
    long watch_timeout_s; /* 0: jittered default */
    long backoff_min_ms, backoff_max_ms;
    struct informer_handlers h;
    bool compact;                     /* items decoded by codec, handlers hi */
    struct informer_codec codec;      /* compact only */
    struct informer_item_handlers hi; /* compact only */
    bool trees; /* compact, and its handlers get each object's tree: `next` holds trees */
    void *arg;
    void (*transform)(cJSON *obj);
    void (*kept)(cJSON *obj, void *arg);

    struct strmap store;       /* the cache */
    struct listing next;       /* a list in progress, page by page */
    char *list_rv;             /* resourceVersion of the list in progress */
    char *cont;                /* continue token of the next page */
    char *rv;                  /* where the next watch starts */
    struct kube_call *call;    /* the list page or watch in flight */
    struct event *retry;       /* backoff timer */
    uint64_t watch_started_ns; /* monotonic */
    long watch_secs;           /* timeoutSeconds of the watch in flight */
    long backoff_ms;           /* the next delay, before jitter */
    unsigned int seed;         /* jitter */
    bool running;              /* between informer_start and informer_stop */
    bool synced;               /* the first list was delivered */
    bool need_list;            /* a retry lists (never synced, or 410) rather than watches */
    bool relisting;            /* the list in progress follows a 410 */
    bool failing;              /* the last list/watch failed: "recovered" is logged once */
    struct informer_stats stats;
};

static void begin_list(struct informer *inf);
static void begin_watch(struct informer *inf);

static const char *obj_str(const cJSON *obj, const char *field)
{
    return json_str(json_get(obj, "metadata"), field);
}

/* "namespace/name" (or "name" when cluster-scoped) into buf; -1 when the object has no name. */
static int obj_key(const cJSON *obj, char *buf, size_t len)
{
    const char *name = obj_str(obj, "name");
    const char *ns = obj_str(obj, "namespace");
    if (!name)
        return -1;
    return key_make(buf, len, ns, name);
}

static void set_str(char **dst, const char *src)
{
    char *s = src ? strdup(src) : NULL;
    free(*dst);
    *dst = s;
}

/* ---- what the store holds: cJSON objects, or a compact cache's items ---- */

static void item_free(const struct informer *inf, void *item)
{
    if (item)
        (inf->compact ? inf->codec.free : json_free)(item);
}

static item_free_fn item_free_of(const struct informer *inf)
{
    return inf->compact ? inf->codec.free : json_free;
}

static const char *item_rv(const struct informer *inf, const void *item)
{
    return inf->compact ? inf->codec.resource_version(item) : obj_str(item, "resourceVersion");
}

static const char *item_uid(const struct informer *inf, const void *item)
{
    return inf->compact ? inf->codec.uid(item) : obj_str(item, "uid");
}

/* How the list in progress (`next`) frees what it holds: the objects' trees when the handlers
 * get them (they are decoded as the list is applied), else what the store would keep. */
static item_free_fn next_free_of(const struct informer *inf)
{
    return inf->trees ? json_free : item_free_of(inf);
}

/* A compact cache's item for obj (borrowed), or NULL when it cannot be decoded: logged, naming
 * the object, and not cached. */
static void *decode_item(const struct informer *inf, const cJSON *obj, const char *key)
{
    char err[256] = "";
    void *item = inf->codec.decode(obj, err, sizeof(err));
    if (!item)
        log_warn("informer: object not cached: it could not be decoded",
                 "informer=%s object=%s error=%s", inf->name, key, err[0] ? err : "out of memory");
    return item;
}

/*
 * What the store keeps of obj (taken): obj itself, or its compact item (obj freed). NULL when
 * it cannot be decoded: logged, naming the object, and not cached.
 */
static void *item_of(const struct informer *inf, cJSON *obj, const char *key)
{
    if (!inf->compact)
        return obj;
    void *item = decode_item(inf, obj, key);
    cJSON_Delete(obj);
    return item;
}

/* tree: the object item was decoded from (a compact cache whose handlers get it), or NULL. */
static void call_add(const struct informer *inf, const void *item, const cJSON *tree)
{
    if (inf->compact && tree && inf->hi.on_add_obj)
        inf->hi.on_add_obj(item, tree, inf->arg);
    else if (inf->compact && inf->hi.on_add)
        inf->hi.on_add(item, inf->arg);
    else if (!inf->compact && inf->h.on_add)
        inf->h.on_add(item, inf->arg);
}

static void call_update(const struct informer *inf, const void *old, const void *item,
                        const cJSON *tree)
{
    if (inf->compact && tree && inf->hi.on_update_obj)
        inf->hi.on_update_obj(old, item, tree, inf->arg);
    else if (inf->compact && inf->hi.on_update)
        inf->hi.on_update(old, item, inf->arg);
    else if (!inf->compact && inf->h.on_update)
        inf->h.on_update(old, item, inf->arg);
}

static void call_delete(const struct informer *inf, const void *item)
{
    if (inf->compact && inf->hi.on_delete)
        inf->hi.on_delete(item, inf->arg);
    else if (!inf->compact && inf->h.on_delete)
        inf->h.on_delete(item, inf->arg);
}

static void call_kept(const struct informer *inf, void *item)
{
    if (inf->kept) /* never set for a compact cache */
        inf->kept(item, inf->arg);
}

/* Marks the end of a failing streak, once. */
static void recovered(struct informer *inf)
{
    if (!inf->failing)
        return;
    inf->failing = false;
    log_info("informer recovered: the API server answers again", "informer=%s failures=%lu",
             inf->name, inf->stats.failures);
}

/* Schedules the next list/watch attempt after a jittered backoff. */
static void backoff(struct informer *inf, const char *what, const struct kube_error *err)
{
    inf->stats.failures++;
    long base = inf->backoff_ms;
    long delay = base / 2 + (long)(rand_r(&inf->seed) % (unsigned)(base / 2 + 1));
    inf->backoff_ms = base * 2 > inf->backoff_max_ms ? inf->backoff_max_ms : base * 2;
    if (!inf->failing) {
        inf->failing = true;
        log_warn("informer: list or watch failed, retrying with backoff",
                 "informer=%s op=%s reason=%s http=%ld message=%s retry_ms=%ld", inf->name, what,
                 err ? err->reason : "StreamEnded", err ? err->http : 0L, err ? err->message : "",
                 delay);
    } else {
        log_debug("informer: still failing", "informer=%s op=%s reason=%s retry_ms=%ld", inf->name,
                  what, err ? err->reason : "StreamEnded", delay);
    }
    struct timeval tv = {.tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000};
    evtimer_add(inf->retry, &tv);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    struct informer *inf = arg;
    if (!inf->running)
        return;
    if (inf->need_list)
        begin_list(inf);
    else
        begin_watch(inf);
}

/* Moves the completed list in `next` into the store, emitting only the differences. */
static void apply_list(struct informer *inf)
{
    unsigned long added = 0, updated = 0, deleted = 0;
    bool first = !inf->synced;
    for (size_t i = 0; i < inf->next.n; i++) {
        const char *key = inf->next.items[i].key;
        void *obj = inf->next.items[i].obj;
        inf->next.items[i].obj = NULL; /* the key stays in `next` as the set of names listed */
        void *cur = strmap_get(&inf->store, key);
        cJSON *tree = NULL; /* the handlers get it: decoded here, freed once they returned */
        if (inf->trees) {
            tree = obj;
            const char *orv = cur ? item_rv(inf, cur) : NULL;
            const char *nrv = obj_str(tree, "resourceVersion");
            /* unchanged, or undecodable (the last known state stays cached): next one */
            obj = orv && nrv && strcmp(orv, nrv) == 0 ? NULL : decode_item(inf, tree, key);
            if (!obj) {
                cJSON_Delete(tree);
                continue;
            }
        }
        if (!cur) {
            added++;
            if (store_insert(&inf->store, key, obj, item_free_of(inf)) == 0) {
                call_add(inf, obj, tree);
                call_kept(inf, obj);
            }
            cJSON_Delete(tree);
            continue;
        }
        const char *orv = item_rv(inf, cur);
        const char *nrv = item_rv(inf, obj);
        if (orv && nrv && strcmp(orv, nrv) == 0) {
            item_free(inf, obj);
            cJSON_Delete(tree);
            continue;
        }
        void *old = cur;
        strmap_put(&inf->store, key, obj); /* present: cannot fail */
        const char *ouid = item_uid(inf, old), *nuid = item_uid(inf, obj);
        if (ouid && nuid && strcmp(ouid, nuid) != 0) {
            /* Deleted and created again under the same name while we were not watching:
             * handlers see what happened, not an update across two objects. */
            deleted++;
            added++;
            call_delete(inf, old);
            call_add(inf, obj, tree);
        } else {
            updated++;
            call_update(inf, old, obj, tree);
        }
        call_kept(inf, obj);
        item_free(inf, old);
        cJSON_Delete(tree);
    }
    const char *key;
    void *obj;
    for (size_t pos = 0; strmap_next(&inf->store, &pos, &key, &obj);) {
        if (listing_has(&inf->next, key))
            continue;
        strmap_del(&inf->store, key);
        deleted++;
        call_delete(inf, obj);
        item_free(inf, obj);
    }
    listing_clear(&inf->next, next_free_of(inf));
    set_str(&inf->rv, inf->list_rv);
    inf->stats.lists++;
    inf->need_list = false;
    if (first) {
        inf->synced = true;
        log_info("informer synced", "informer=%s objects=%zu rv=%s", inf->name, inf->store.used,
                 inf->rv);
        void (*synced)(void *) = inf->compact ? inf->hi.on_synced : inf->h.on_synced;
        if (synced)
            synced(inf->arg);
    } else {
        log_info("informer relisted",
                 "informer=%s objects=%zu added=%lu updated=%lu "
                 "deleted=%lu rv=%s",
                 inf->name, inf->store.used, added, updated, deleted, inf->rv);
    }
    inf->relisting = false;
}

static void on_list_page(cJSON *list, const struct kube_error *err, void *arg)
{
    struct informer *inf = arg;
    inf->call = NULL;
    if (err) {
        listing_clear(&inf->next, next_free_of(inf));
        if (err->code == KUBE_ERR_GONE && inf->cont) {
            /* The continue token expired mid-list: start the list over. */
            log_info("informer: list continue token expired, listing again", "informer=%s",
                     inf->name);
            begin_list(inf);
            return;
        }
        backoff(inf, "list", err);
        return;
    }
    recovered(inf);
    const char *rv = obj_str(list, "resourceVersion");
    if (!inf->cont)
        set_str(&inf->list_rv, rv ? rv : "");
    cJSON *items = cJSON_GetObjectItemCaseSensitive(list, "items");
    cJSON *item;
    while (cJSON_IsArray(items) && (item = cJSON_DetachItemFromArray(items, 0))) {
        if (inf->transform)
            inf->transform(item);
        char key[512];
        if (obj_key(item, key, sizeof(key)) != 0 || listing_has(&inf->next, key)) {
            cJSON_Delete(item);
            continue;
        }
        void *kept = inf->trees ? item : item_of(inf, item, key);
        if (kept)
            listing_add(&inf->next, key, kept, next_free_of(inf));
    }
    const char *cont = obj_str(list, "continue");
    set_str(&inf->cont, cont && *cont ? cont : NULL);
    if (inf->cont) {
        begin_list(inf);
        return;
    }
    apply_list(inf);
    if (inf->running)
        begin_watch(inf);
}

static void begin_list(struct informer *inf)
{
    if (!inf->cont)
        listing_clear(&inf->next, next_free_of(inf));
    struct kube_list_opts o = {
        .label_selector = inf->label,
        .field_selector = inf->field,
        .limit = inf->page_size,
        .cont = inf->cont,
        .cache_read = true,
    };
    inf->need_list = true;
    inf->call = kube_list(inf->kc, &inf->res, inf->ns, &o, on_list_page, inf);
    if (!inf->call) {
        struct kube_error e = {.code = KUBE_ERR_OTHER, .reason = "Internal"};
        snprintf(e.message, sizeof(e.message), "cannot start the list request");
        set_str(&inf->cont, NULL);
        backoff(inf, "list", &e);
    }
}

/* The stored object `obj` replaces (or joins) the store; handlers told. Takes obj. */
static void upsert(struct informer *inf, cJSON *json)
{
    char key[512];
    if (obj_key(json, key, sizeof(key)) != 0) {
        cJSON_Delete(json);
        return;
    }
    /* the handlers get the tree (freed once they returned), or only what is cached */
    cJSON *tree = inf->trees ? json : NULL;
    void *obj = tree ? decode_item(inf, tree, key) : item_of(inf, json, key);
    if (!obj) {
        cJSON_Delete(tree);
        return;
    }
    void *cur = strmap_get(&inf->store, key);
    if (!cur) {
        if (store_insert(&inf->store, key, obj, item_free_of(inf)) == 0) {
            call_add(inf, obj, tree);
            call_kept(inf, obj);
        }
        cJSON_Delete(tree);
        return;
    }
    const char *orv = item_rv(inf, cur);
    const char *nrv = item_rv(inf, obj);
    if (orv && nrv && strcmp(orv, nrv) == 0) {
        item_free(inf, obj); /* replayed after a reconnect: nothing new */
        cJSON_Delete(tree);
        return;
    }
    void *old = cur;
    strmap_put(&inf->store, key, obj); /* present: cannot fail */
    call_update(inf, old, obj, tree);
    call_kept(inf, obj);
    item_free(inf, old);
    cJSON_Delete(tree);
}

static void remove_obj(struct informer *inf, cJSON *json)
{
    char key[512];
    if (obj_key(json, key, sizeof(key)) != 0) {
        cJSON_Delete(json);
        return;
    }
    void *old = strmap_del(&inf->store, key);
    if (!old) {
        cJSON_Delete(json);
        return;
    }
    /* The final state is the DELETED event's object: it carries the deletion RV (the stored
     * one when a compact cache cannot decode it). */
    void *obj = item_of(inf, json, key);
    call_delete(inf, obj ? obj : old);
    item_free(inf, obj);
    item_free(inf, old);
}

static void on_watch_event(const char *type, cJSON *obj, void *arg)
{
    struct informer *inf = arg;
    if (strcmp(type, "ERROR") == 0) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(obj, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(obj, "message");
        const cJSON *reason = cJSON_GetObjectItemCaseSensitive(obj, "reason");
        struct kube_error e = {.code = KUBE_ERR_OTHER,
                               .http = cJSON_IsNumber(code) ? (long)code->valuedouble : 0};
        snprintf(e.reason, sizeof(e.reason), "%s",
                 cJSON_IsString(reason) ? reason->valuestring : "WatchError");
        snprintf(e.message, sizeof(e.message), "%s", cJSON_IsString(msg) ? msg->valuestring : "");
        cJSON_Delete(obj);
        kube_call_cancel(inf->call);
        inf->call = NULL;
        if (e.http == 410) {
            log_info("informer: watch expired (410), relisting", "informer=%s rv=%s message=%s",
                     inf->name, inf->rv, e.message);
            inf->relisting = true;
            begin_list(inf);
            return;
        }
        backoff(inf, "watch", &e);
        return;
    }
    recovered(inf);
    inf->backoff_ms = inf->backoff_min_ms;
    const char *rv = obj_str(obj, "resourceVersion");
    if (rv && *rv)
        set_str(&inf->rv, rv);
    if (inf->transform && strcmp(type, "BOOKMARK") != 0)
        inf->transform(obj);
    if (strcmp(type, "ADDED") == 0 || strcmp(type, "MODIFIED") == 0)
        upsert(inf, obj);
    else if (strcmp(type, "DELETED") == 0)
        remove_obj(inf, obj);
    else
        cJSON_Delete(obj); /* BOOKMARK: only the RV matters */
}

static void on_watch_done(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct informer *inf = arg;
    inf->call = NULL;
    double lived = (double)(clock_mono_ns() - inf->watch_started_ns) / 1e9;
    if (err && err->code == KUBE_ERR_GONE) {
        log_info("informer: watch expired (410), relisting", "informer=%s rv=%s", inf->name,
                 inf->rv);
        inf->relisting = true;
        begin_list(inf);
        return;
    }
    if (err) {
        backoff(inf, "watch", err);
        return;
    }
    recovered(inf);
    if (lived >= INFORMER_HEALTHY_S)
        inf->backoff_ms = inf->backoff_min_ms;
    if (lived >= (double)inf->watch_secs - 1) {
        log_debug("informer: watch timed out, watching again", "informer=%s rv=%s", inf->name,
                  inf->rv);
        begin_watch(inf);
        return;
    }
    log_info("informer: watch ended early, reconnecting", "informer=%s rv=%s lived_s=%f", inf->name,
             inf->rv, lived);
    /* Not an error, but a server that closes watches at once must not be hammered. */
    inf->stats.failures++;
    long base = inf->backoff_ms;
    long delay = base / 2 + (long)(rand_r(&inf->seed) % (unsigned)(base / 2 + 1));
    inf->backoff_ms = base * 2 > inf->backoff_max_ms ? inf->backoff_max_ms : base * 2;
    struct timeval tv = {.tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000};
    evtimer_add(inf->retry, &tv);
}

static void begin_watch(struct informer *inf)
{
    inf->watch_secs =
        inf->watch_timeout_s > 0 ? inf->watch_timeout_s : 300 + (long)(rand_r(&inf->seed) % 300);
    struct kube_list_opts o = {
        .label_selector = inf->label,
        .field_selector = inf->field,
        .resource_version = inf->rv,
        .timeout_seconds = inf->watch_secs,
        .cache_read = true,
    };
    inf->watch_started_ns = clock_mono_ns();
    inf->stats.watches++;
    inf->call = kube_watch(inf->kc, &inf->res, inf->ns, &o, on_watch_event, on_watch_done, inf);
    if (!inf->call) {
        struct kube_error e = {.code = KUBE_ERR_OTHER, .reason = "Internal"};
        snprintf(e.message, sizeof(e.message), "cannot start the watch request");
        backoff(inf, "watch", &e);
    }
}

/* ---- public ---- */

struct informer *informer_new(struct kube_client *kc, const struct informer_opts *o,
                              const struct informer_handlers *h, void *arg)
{
    if (!kc || !o || !o->res.resource || !o->res.version)
        return NULL;
    struct informer *inf = xcalloc(1, sizeof(*inf));
    inf->kc = kc;
    inf->res = o->res;
    if (h)
        inf->h = *h;
    inf->arg = arg;
    inf->transform = o->transform;
    inf->kept = o->kept;
    inf->page_size = o->page_size > 0 ? o->page_size : 500;
    inf->watch_timeout_s = o->watch_timeout_s;
    inf->backoff_min_ms = o->backoff_min_ms > 0 ? o->backoff_min_ms : 200;
    inf->backoff_max_ms = o->backoff_max_ms > 0 ? o->backoff_max_ms : 30000;
    if (inf->backoff_max_ms < inf->backoff_min_ms)
        inf->backoff_max_ms = inf->backoff_min_ms;
    inf->backoff_ms = inf->backoff_min_ms;
    inf->seed = (unsigned)clock_wall_s() ^ (unsigned)(uintptr_t)inf ^ (unsigned)getpid();
    inf->need_list = true;
    char defname[256];
    snprintf(defname, sizeof(defname), "%s%s%s%s%s", o->res.resource,
             o->res.group && *o->res.group ? "." : "", o->res.group ? o->res.group : "",
             o->ns && o->res.namespaced ? "@" : "", o->ns && o->res.namespaced ? o->ns : "");
    set_str(&inf->ns, o->res.namespaced ? o->ns : NULL);
    set_str(&inf->label, o->label_selector);
    set_str(&inf->field, o->field_selector);
    set_str(&inf->name, o->name ? o->name : defname);
    set_str(&inf->rv, "");
    inf->retry = evtimer_new(kube_client_base(kc), on_retry, inf);
    if (!inf->name || !inf->rv || !inf->retry) {
        informer_free(inf);
        return NULL;
    }
    return inf;
}

struct informer *informer_new_compact(struct kube_client *kc, const struct informer_opts *opts,
                                      const struct informer_codec *codec,
                                      const struct informer_item_handlers *h, void *arg)
{
    if (!codec || !codec->decode || !codec->free || !codec->resource_version || !codec->uid ||
        !opts || opts->kept)
        return NULL;
    struct informer *inf = informer_new(kc, opts, NULL, arg);
    if (!inf)
        return NULL;
    inf->compact = true;
    inf->codec = *codec;
    if (h)
        inf->hi = *h;
    inf->trees = inf->hi.on_add_obj || inf->hi.on_update_obj;
    return inf;
}

int informer_start(struct informer *inf)
{
    if (inf->running)
        return 0;
    inf->running = true;
    if (inf->need_list) {
        set_str(&inf->cont, NULL);
        begin_list(inf);
    } else {
        begin_watch(inf);
    }
    return inf->call ? 0 : -1;
}

bool informer_retry_now(struct informer *inf)
{
    if (!inf->running || inf->call || !evtimer_pending(inf->retry, NULL))
        return false;
    evtimer_del(inf->retry);
    inf->backoff_ms = inf->backoff_min_ms;
    log_debug("informer: the API server answers again, retrying now", "informer=%s", inf->name);
    on_retry(-1, 0, inf);
    return true;
}

void informer_stop(struct informer *inf)
{
    inf->running = false;
    if (inf->call)
        kube_call_cancel(inf->call);
    inf->call = NULL;
    if (inf->retry)
        evtimer_del(inf->retry);
    listing_clear(&inf->next, next_free_of(inf));
    set_str(&inf->cont, NULL);
}

void informer_free(struct informer *inf)
{
    if (!inf)
        return;
    informer_stop(inf);
    if (inf->retry)
        event_free(inf->retry);
    store_clear(&inf->store, item_free_of(inf));
    free(inf->ns);
    free(inf->label);
    free(inf->field);
    free(inf->name);
    free(inf->list_rv);
    free(inf->cont);
    free(inf->rv);
    free(inf);
}

bool informer_synced(const struct informer *inf)
{
    return inf->synced;
}

static void *find_named(const struct informer *inf, const char *ns, const char *name)
{
    char key[512];
    if (key_make(key, sizeof(key), ns, name) != 0)
        return NULL;
    return strmap_get(&inf->store, key);
}

const cJSON *informer_get(const struct informer *inf, const char *ns, const char *name)
{
    assert(!inf->compact); /* its items are not cJSON: informer_get_item (a merge once missed it) */
    return inf->compact ? NULL : find_named(inf, ns, name);
}

const void *informer_get_item(const struct informer *inf, const char *ns, const char *name)
{
    return find_named(inf, ns, name);
}

size_t informer_count(const struct informer *inf)
{
    return inf->store.used;
}

void informer_foreach(const struct informer *inf, void (*fn)(const cJSON *obj, void *arg),
                      void *arg)
{
    assert(!inf->compact);
    const char *key;
    void *obj;
    for (size_t pos = 0; !inf->compact && strmap_next(&inf->store, &pos, &key, &obj);)
        fn(obj, arg);
}

const char *informer_resource_version(const struct informer *inf)
{
    return inf->rv ? inf->rv : "";
}

void informer_get_stats(const struct informer *inf, struct informer_stats *out)
{
    *out = inf->stats;
}
