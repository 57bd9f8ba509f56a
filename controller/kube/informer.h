/*
 * informer: a list-then-watch cache of one kind of resource (optionally one namespace and a
 * label/field selector), kept current by a watch, with add/update/delete handlers.
 *
 * Life:
 *   list (paginated)  -> every object stored, on_add for each, `synced` set, on_synced once
 *   watch from the list's resourceVersion, with bookmarks (they only move the stored RV)
 *     ADDED/MODIFIED/DELETED -> store updated, handler called
 *     stream ended (timeoutSeconds, dropped) -> watch again from the stored RV
 *     410 Gone (HTTP or an ERROR event with code 410) -> relist: the new list is compared with
 *       the store and only the differences are emitted (adds, updates, deletes; an object
 *       recreated under the same name, new uid, is a delete then an add); the cache is never
 *       dropped, so readers always see the last known state
 *     API errors (refused, 5xx, timeouts) -> retry after a jittered exponential backoff
 *       (200 ms doubling to 30 s by default); a watch that stayed up a while resets it
 * Transitions (synced, relist, watch failing, recovered) are logged once each as JSON.
 *
 * Ownership: the informer owns the stored cJSON objects (or, for a compact cache, the items its
 * codec decoded). Handlers and informer_get get borrowed
 * pointers: valid during the handler call, or until control returns to the event loop. Handlers
 * may call informer_get/informer_foreach and start kube calls; they must not free the informer.
 *
 * Thread model: the control thread's event loop; not thread-safe.
 */
#ifndef HOLDFAST_INFORMER_H
#define HOLDFAST_INFORMER_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "controller/kube/kube.h"

struct informer;

/* Handlers; any may be NULL. `obj` and `old` are borrowed for the call. */
struct informer_handlers {
    void (*on_add)(const cJSON *obj, void *arg);
    void (*on_update)(const cJSON *old, const cJSON *obj, void *arg);
    void (*on_delete)(const cJSON *obj, void *arg); /* the last state known */
    void (*on_synced)(void *arg); /* once, after the first complete list was delivered */
};

/* What to watch. Strings are copied. Zero fields take the defaults. */
struct informer_opts {
    struct kube_resource res;   /* the kind (its strings must be static or outlive the informer) */
    const char *ns;             /* one namespace, or NULL for all (ignored when cluster-scoped) */
    const char *label_selector; /* or NULL */
    const char *field_selector; /* or NULL */
    long page_size;             /* list page size (default 500) */
    long watch_timeout_s;       /* timeoutSeconds of each watch (default 300..600, jittered) */
    long backoff_min_ms;        /* first retry delay (default 200) */
    long backoff_max_ms;        /* largest retry delay (default 30000) */
    const char *name;           /* for logs (default: the resource) */
    /* Prunes each object in place before it is stored or handed to a handler, so the cache
     * keeps only what its reader uses (as client-go's transform functions drop managedFields).
     * It must keep metadata.name, namespace, uid and resourceVersion. NULL: keep all. */
    void (*transform)(cJSON *obj);
    /* Called with the stored object once the handlers of its add or update returned (with the
     * handlers' arg): it may prune what a handler consumed and nothing reads from the cache
     * again. The same rules as transform. NULL: nothing. */
    void (*kept)(cJSON *obj, void *arg);
};

/* A stopped informer; kc (borrowed) must outlive it. Returns NULL when out of memory or the
 * options are invalid. */
struct informer *informer_new(struct kube_client *kc, const struct informer_opts *opts,
                              const struct informer_handlers *h, void *arg);

/*
 * A compact cache: the informer keeps, instead of each object's cJSON tree, the kind's own
 * struct holding exactly what its readers use (a cJSON node costs 64 bytes plus its strings per
 * member: 10,000 EndpointSlices took ~22 MB as trees). decode builds it from the object as the
 * transform left it; every list item and watch event goes through it, the tree is then freed.
 */
struct informer_codec {
    /* The compact form of obj (borrowed), owned by the informer, or NULL with a message in
     * err naming what is wrong: the object is then not cached (logged with its name). */
    void *(*decode)(const cJSON *obj, char *err, size_t errlen);
    void (*free)(void *item);
    /* Its metadata.resourceVersion and uid (borrowed), or NULL when it has none. */
    const char *(*resource_version)(const void *item);
    const char *(*uid)(const void *item);
};

/* The handlers of a compact cache: the same calls as informer_handlers, given decoded items. */
struct informer_item_handlers {
    void (*on_add)(const void *item, void *arg);
    void (*on_update)(const void *old, const void *item, void *arg);
    void (*on_delete)(const void *item, void *arg); /* the last state known */
    void (*on_synced)(void *arg);
    /* Instead of on_add and on_update (either may be NULL), for a kind whose handlers read more
     * than its compact form keeps (an ElastiService's spec): also given the object the item was
     * decoded from, as the transform left it (borrowed for the call: freed when it returns).
     * A list then keeps its pages as trees until it is complete, and decodes each as it is
     * applied (as informer_new's lists hold their trees); one that cannot be decoded leaves
     * its last known state cached. */
    void (*on_add_obj)(const void *item, const cJSON *obj, void *arg);
    void (*on_update_obj)(const void *old, const void *item, const cJSON *obj, void *arg);
};

/* As informer_new, for a compact cache decoded by `codec` (copied). opts->kept must be NULL.
 * Its items are not cJSON: read it with informer_get_item (informer_get and informer_foreach
 * assert on it, and return nothing without assertions). */
struct informer *informer_new_compact(struct kube_client *kc, const struct informer_opts *opts,
                                      const struct informer_codec *codec,
                                      const struct informer_item_handlers *h, void *arg);

/* Starts (or restarts after informer_stop): lists when it never synced, else watches from the
 * stored resourceVersion (410 then relists). Returns 0, or -1 when it cannot start a call (it
 * then retries on its backoff anyway). */
int informer_start(struct informer *inf);

/* When the informer waits out a backoff, retries now, from the shortest backoff (the caller knows
 * the API server answers again). Returns whether it did. */
bool informer_retry_now(struct informer *inf);

/* Cancels the list or watch in flight and any retry timer; the cache and its resourceVersion
 * are kept, and no handler runs until informer_start. */
void informer_stop(struct informer *inf);

/* Stops and frees the informer and every stored object. Not from a handler, and before the
 * kube_client it uses is freed. */
void informer_free(struct informer *inf);

/* True once the first list has been delivered to the handlers (stays true across relists). */
bool informer_synced(const struct informer *inf);

/* The stored object `ns`/`name` (ns "" or NULL for cluster-scoped), borrowed, or NULL. */
const cJSON *informer_get(const struct informer *inf, const char *ns, const char *name);

/* The item `ns`/`name` of a compact cache (borrowed, as informer_get), or NULL. */
const void *informer_get_item(const struct informer *inf, const char *ns, const char *name);

/* Number of objects stored. */
size_t informer_count(const struct informer *inf);

/* Calls fn for every stored object (borrowed), in no particular order. fn must not change the
 * informer (no start/stop/free). */
void informer_foreach(const struct informer *inf, void (*fn)(const cJSON *obj, void *arg),
                      void *arg);

/* The resourceVersion the next watch starts from (borrowed), "" before the first list. */
const char *informer_resource_version(const struct informer *inf);

/* Counters, for tests and metrics. */
struct informer_stats {
    unsigned long lists;    /* complete lists (first + relists) */
    unsigned long relists;  /* lists after a 410 */
    unsigned long watches;  /* watches started */
    unsigned long failures; /* list/watch failures followed by a backoff */
};
void informer_get_stats(const struct informer *inf, struct informer_stats *out);

#endif
