/*
 * kube: the Kubernetes REST calls, on top of http (libcurl multi on the control thread's
 * event_base) and cJSON.
 *
 * Every call is asynchronous: it returns a `struct kube_call *` handle (cancel it with
 * kube_call_cancel) and later calls back exactly once with either the decoded object or a
 * `struct kube_error`. Watches also call back once per event.
 *
 * Resources are addressed by (group, version, resource, namespaced): kube_path builds
 * "/api/v1/namespaces/NS/pods/NAME/status" or "/apis/apps/v1/namespaces/NS/deployments/NAME".
 *
 * A client-side rate limiter (token bucket: `qps` tokens a second, up to `burst` saved) delays
 * requests, never drops them: a call waits in FIFO order until it gets a token. Watches take one
 * token when they (re)connect. Cache reads (an informer's list pages and watches, marked with
 * kube_list_opts.cache_read) wait in a lane ahead of the other calls: they take tokens of the
 * same bucket (the total stays at qps), but never wait behind a backlog of writes, so the caches
 * sync and keep up however many writes are queued.
 *
 * Retrying a write on 409 Conflict after a fresh read is the caller's decision (the reconciler
 * knows what it meant to change); kube_update_retry does the common "get, modify, put, retry on
 * 409 up to N times" for it.
 *
 * Thread model: one control thread; nothing here is thread-safe.
 */
#ifndef HOLDFAST_KUBE_H
#define HOLDFAST_KUBE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct kubeconfig;
struct kube_client;
struct kube_call;

/* The Status reasons callers act on; anything else is KUBE_ERR_OTHER with the text in
 * kube_error.reason. */
enum kube_err {
    KUBE_OK = 0,
    KUBE_ERR_TRANSPORT,      /* no HTTP response: refused, TLS failure, timeout, reset */
    KUBE_ERR_BAD_REQUEST,    /* 400 BadRequest */
    KUBE_ERR_UNAUTHORIZED,   /* 401 Unauthorized */
    KUBE_ERR_FORBIDDEN,      /* 403 Forbidden */
    KUBE_ERR_NOT_FOUND,      /* 404 NotFound */
    KUBE_ERR_CONFLICT,       /* 409 Conflict (stale resourceVersion) */
    KUBE_ERR_ALREADY_EXISTS, /* 409 AlreadyExists */
    KUBE_ERR_GONE,           /* 410 Gone / Expired: resourceVersion or continue token too old */
    KUBE_ERR_INVALID,        /* 422 Invalid */
    KUBE_ERR_TOO_MANY,       /* 429 TooManyRequests */
    KUBE_ERR_UNAVAILABLE,    /* 503 ServiceUnavailable, 500/502/504 and the like */
    KUBE_ERR_DECODE,         /* a 2xx whose body is not the JSON expected */
    KUBE_ERR_OTHER,          /* any other status */
};

/* A failed call. */
struct kube_error {
    enum kube_err code; /* what to do about it */
    long http;          /* HTTP status, 0 when none was received */
    char reason[48];    /* Status.reason ("NotFound", "Expired", ...) or "Transport" */
    char message[512];  /* Status.message, or curl's message for transport errors */
};

/* A kind of resource. Strings are borrowed; static strings are the rule. */
struct kube_resource {
    const char *group;    /* "" for the core group, e.g. "apps" */
    const char *version;  /* "v1" */
    const char *resource; /* plural lower-case name: "deployments" */
    bool namespaced;      /* false for cluster-scoped kinds (namespaces, nodes) */
};

/* The defaults of struct kube_client_opts. Whole numbers: a caller may show them as text. */
#define KUBE_DEFAULT_QPS 20
#define KUBE_DEFAULT_BURST 30
#define KUBE_DEFAULT_TIMEOUT_MS 30000
#define KUBE_DEFAULT_USER_AGENT "kube-client"
#define KUBE_COUNTED_MAX 32 /* resources a client counts requests by (kube_client_requests) */

/* Client settings; zero fields take the defaults. */
struct kube_client_opts {
    double qps;              /* rate limit, tokens per second (default KUBE_DEFAULT_QPS) */
    int burst;               /* bucket size (default KUBE_DEFAULT_BURST) */
    long timeout_ms;         /* per non-watch request (default KUBE_DEFAULT_TIMEOUT_MS) */
    long connect_timeout_ms; /* TCP + TLS connect (default 10000) */
    const char *user_agent;  /* default KUBE_DEFAULT_USER_AGENT */
    /* The resources requests are counted by (kube_client_requests): "resource" or
     * "resource/subresource", borrowed (static strings), at most KUBE_COUNTED_MAX; NULL: none,
     * every request counts as another resource. */
    const char *const *counted;
    size_t n_counted;
};

/* Called once when a call ends. On success `err` is NULL and `obj` is the decoded response (NULL
 * for an empty body); on failure `err` is set and `obj` is the decoded Status or NULL. `obj` is
 * owned by kube and freed when the callback returns; the callback may detach parts of it (e.g.
 * cJSON_DetachItemFromObject) to keep them. The call handle is gone once this returns.
 * Responses and watch events are decoded with json_parse (common/json.h): a string that held a
 * NUL character is marked, for the reader to refuse (json_find_nul). */
typedef void (*kube_done_fn)(cJSON *obj, const struct kube_error *err, void *arg);

/* Called for each event of a watch: `type` is "ADDED", "MODIFIED", "DELETED", "BOOKMARK" or
 * "ERROR" (object is then a Status: code 410 means relist). The callback owns `object` (keep
 * it, or free it with cJSON_Delete); `type` is borrowed. It may cancel the watch. */
typedef void (*kube_event_fn)(const char *type, cJSON *object, void *arg);

/* Called by kube_update_retry with the freshly read object to change in place. Return 0 to
 * write it, 1 when there is nothing to change (the call ends with the object as read, no write),
 * or -1 to give up (the call ends with KUBE_ERR_OTHER, reason "Aborted"). */
typedef int (*kube_mutate_fn)(cJSON *obj, void *arg);

/* Options of a list or watch. Strings are borrowed until the call returns. */
struct kube_list_opts {
    const char *label_selector;   /* labelSelector, or NULL */
    const char *field_selector;   /* fieldSelector, or NULL */
    long limit;                   /* page size (list), 0: everything at once */
    const char *cont;             /* continue token of the previous page (list), or NULL */
    const char *resource_version; /* list: resourceVersion; watch: start after this RV */
    long timeout_seconds;         /* watch: server-side timeoutSeconds (default 300) */
    bool no_bookmarks;            /* watch: do not ask for allowWatchBookmarks */
    bool cache_read;              /* feeds a cache (an informer): ahead of other waiting calls */
};

enum kube_patch_type {
    KUBE_PATCH_MERGE,     /* application/merge-patch+json (RFC 7386) */
    KUBE_PATCH_JSON,      /* application/json-patch+json (RFC 6902; patch is an array) */
    KUBE_PATCH_STRATEGIC, /* application/strategic-merge-patch+json (built-in kinds only) */
};

/* A client on `base` using `kc` (both borrowed; they must outlive the client). Logs a warning
 * when kc->insecure is set: TLS verification off is never silent. Returns NULL with err set. */
struct kube_client *kube_client_new(struct event_base *base, struct kubeconfig *kc,
                                    const struct kube_client_opts *opts, char *err, size_t errlen);

/* Calls cb(arg) when the API server answers again (any 2xx or 4xx) after a call failed without
 * an answer (transport) or with a 5xx. It runs before the answering call's own callback. */
void kube_client_on_back(struct kube_client *c, void (*cb)(void *arg), void *arg);

/* Cancels every call in flight or waiting (no callbacks) and frees the client. */
void kube_client_free(struct kube_client *c);

/* Writes the URL path of `res` into buf: the collection when name is NULL, with "/sub" when
 * subresource is set ("status", "scale"). ns is ignored for cluster-scoped resources and may be
 * NULL for "all namespaces". Returns 0, or -1 when it does not fit or a name holds '/'. */
int kube_path(const struct kube_resource *res, const char *ns, const char *name,
              const char *subresource, char *buf, size_t len);

/* Appends `s` to buf percent-encoded for a query value. Returns 0, or -1 when it does not fit. */
int kube_query_escape(const char *s, char *buf, size_t len);

/* The calls. Each returns a handle valid until its done callback returns, or NULL (nothing will
 * be called) when the arguments are invalid or memory runs out. Objects passed in are borrowed
 * (serialised before the function returns). */
struct kube_call *kube_get(struct kube_client *c, const struct kube_resource *res, const char *ns,
                           const char *name, const char *subresource, kube_done_fn done, void *arg);

/* One page of a list (the whole collection when opts->limit is 0). The List's metadata carries
 * resourceVersion and, when more pages remain, continue. */
struct kube_call *kube_list(struct kube_client *c, const struct kube_resource *res, const char *ns,
                            const struct kube_list_opts *opts, kube_done_fn done, void *arg);

struct kube_call *kube_create(struct kube_client *c, const struct kube_resource *res,
                              const char *ns, const cJSON *obj, kube_done_fn done, void *arg);

/* PUT: obj's metadata.resourceVersion makes it conditional (409 Conflict when stale). */
struct kube_call *kube_update(struct kube_client *c, const struct kube_resource *res,
                              const char *ns, const char *name, const char *subresource,
                              const cJSON *obj, kube_done_fn done, void *arg);

struct kube_call *kube_patch(struct kube_client *c, const struct kube_resource *res, const char *ns,
                             const char *name, const char *subresource, enum kube_patch_type type,
                             const cJSON *patch, kube_done_fn done, void *arg);

/* DELETE; `options` is a DeleteOptions body (preconditions, propagationPolicy) or NULL. */
struct kube_call *kube_delete(struct kube_client *c, const struct kube_resource *res,
                              const char *ns, const char *name, const cJSON *options,
                              kube_done_fn done, void *arg);

/* A watch from opts->resource_version (with allowWatchBookmarks unless opts->no_bookmarks).
 * on_event runs per event; done runs once when the stream ends: err NULL when the server
 * closed it normally (timeoutSeconds elapsed, or the connection was dropped cleanly), else the
 * error (a 410 before the stream started is KUBE_ERR_GONE). */
struct kube_call *kube_watch(struct kube_client *c, const struct kube_resource *res, const char *ns,
                             const struct kube_list_opts *opts, kube_event_fn on_event,
                             kube_done_fn done, void *arg);

/* Get, mutate, PUT; on 409 Conflict get again and repeat, at most `attempts` times in all.
 * done gets the object written (or read, when mutate returned 1), or the last error. */
struct kube_call *kube_update_retry(struct kube_client *c, const struct kube_resource *res,
                                    const char *ns, const char *name, const char *subresource,
                                    int attempts, kube_mutate_fn mutate, kube_done_fn done,
                                    void *arg);

/* Stops a call (waiting for a token or in flight) and frees it; no callback runs afterwards.
 * Safe from any callback, including a watch's own on_event; not from its own done callback. */
void kube_call_cancel(struct kube_call *call);

/* The event_base the client runs on (for callers' own timers). */
struct event_base *kube_client_base(const struct kube_client *c);

/* Calls waiting for a rate-limiter token right now (for tests and metrics). */
size_t kube_client_queued(const struct kube_client *c);

/* Seconds of the rate limiter's pace spent on calls that waited for a token and were answered:
 * each counts 1/qps when its answer (any HTTP status) comes. It grows about as fast as the clock
 * while the limiter holds calls back and the API server answers them, and not while calls get a
 * token at once, none are made, or none are answered (a transport failure or timeout). */
double kube_client_throttled_seconds(const struct kube_client *c);

/* Calls not finished yet (queued or in flight), watches not counted: a drain waits for them. */
size_t kube_client_pending(const struct kube_client *c);

/* What a request sent did (kube_client_requests). */
enum kube_verb {
    KUBE_VERB_GET,
    KUBE_VERB_LIST,
    KUBE_VERB_WATCH,
    KUBE_VERB_CREATE,
    KUBE_VERB_UPDATE,
    KUBE_VERB_PATCH,
    KUBE_VERB_DELETE,
    KUBE_VERB_COUNT
};

/* "get", "list", "watch", "create", "update", "patch", "delete". */
const char *kube_verb_name(enum kube_verb verb);

/* Requests this client sent (each one handed to HTTP: a kube_update_retry's GET and PUT count
 * apart, a watch counts when it connects), by verb and by resource: `counted` indexes the
 * client's kube_client_opts.counted, and n_counted counts every other resource. */
unsigned long long kube_client_requests(const struct kube_client *c, enum kube_verb verb,
                                        size_t counted);

/* A short name for an error code ("NotFound", "Transport", ...). */
const char *kube_err_name(enum kube_err code);

#endif
