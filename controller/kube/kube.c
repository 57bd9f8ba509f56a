/*
 * kube: Kubernetes REST calls over http + cJSON, with a token-bucket rate limiter. See kube.h.
 *
 * A call's life: built (method, URL, body) -> queued for a rate-limiter token -> dispatched as
 * an http request -> done (decoded and handed to the caller) -> freed. kube_update_retry loops
 * through that life several times (GET, PUT, on 409 GET again) in the same call.
 */
#include "controller/kube/kube.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "controller/kube/http.h"
#include "controller/kube/kubeconfig.h"

#define KUBE_PATH_MAX 1024
#define KUBE_URL_MAX 4096

struct kube_client {
    struct event_base *base;
    struct kubeconfig *kc; /* borrowed */
    struct http_client *http;
    struct http_tls tls; /* points into kc */
    double qps;
    double burst;
    long timeout_ms;
    long connect_timeout_ms;
    char ua_header[160];             /* "User-Agent: ..." */
    double tokens;                   /* rate-limiter tokens available now */
    uint64_t refilled_ns;            /* when tokens was last brought up to date (monotonic) */
    struct event *limiter;           /* fires when the head of the queue can have a token */
    struct kube_call *qhead, *qtail; /* calls waiting for a token, FIFO */
    struct kube_call *qcache_tail;   /* the last cache read of the queue (they lead it), or NULL */
    size_t queued;
    double throttled_s;    /* kube_client_throttled_seconds */
    struct kube_call *all; /* every live call, doubly linked */
    bool unreachable;      /* the last outcome was a transport failure or a 5xx */
    void (*on_back)(void *arg);
    void *on_back_arg;
    const char *const *counted; /* kube_client_opts.counted (borrowed) */
    size_t n_counted;
    unsigned long long sent[KUBE_VERB_COUNT][KUBE_COUNTED_MAX + 1]; /* requests dispatched */
};

enum call_phase {
    PHASE_PLAIN,     /* one request, decoded and handed over */
    PHASE_WATCH,     /* a stream of events */
    PHASE_RETRY_GET, /* kube_update_retry: reading */
    PHASE_RETRY_PUT, /* kube_update_retry: writing */
};

struct kube_call {
    struct kube_client *c;
    struct kube_call *prev, *next; /* in c->all */
    struct kube_call *qnext;       /* in the limiter queue */
    bool queued;
    bool cache_read; /* kube_list_opts.cache_read: waits ahead of the other calls */
    bool waited;     /* its token came from the limiter's timer: counted when answered */
    bool in_done;    /* the done callback is running */
    bool *gone;      /* set to true when the call is freed (during on_event) */
    enum call_phase phase;
    bool collection; /* a list (GET of the collection) */
    size_t counted;  /* its resource's index in the client's counted names (n_counted: other) */
    char method[8];
    char *url;
    char *body; /* request body, or NULL */
    size_t body_len;
    const char *content_type; /* of body */
    struct http_request *req; /* in flight, or NULL */
    struct event *fail_ev;    /* delivers a dispatch failure outside the caller's frame */
    long timeout_ms;
    kube_done_fn done;
    kube_event_fn on_event;
    kube_mutate_fn mutate; /* update_retry */
    int attempts_left;     /* update_retry */
    void *arg;
};

static const char *const err_names[] = {
    [KUBE_OK] = "OK",
    [KUBE_ERR_TRANSPORT] = "Transport",
    [KUBE_ERR_BAD_REQUEST] = "BadRequest",
    [KUBE_ERR_UNAUTHORIZED] = "Unauthorized",
    [KUBE_ERR_FORBIDDEN] = "Forbidden",
    [KUBE_ERR_NOT_FOUND] = "NotFound",
    [KUBE_ERR_CONFLICT] = "Conflict",
    [KUBE_ERR_ALREADY_EXISTS] = "AlreadyExists",
    [KUBE_ERR_GONE] = "Gone",
    [KUBE_ERR_INVALID] = "Invalid",
    [KUBE_ERR_TOO_MANY] = "TooManyRequests",
    [KUBE_ERR_UNAVAILABLE] = "ServiceUnavailable",
    [KUBE_ERR_DECODE] = "Decode",
    [KUBE_ERR_OTHER] = "Other",
};

const char *kube_err_name(enum kube_err code)
{
    if ((size_t)code < sizeof(err_names) / sizeof(err_names[0]) && err_names[code])
        return err_names[code];
    return "Other";
}

/* ---- request accounting ---- */

static const char *const verb_names[KUBE_VERB_COUNT] = {
    [KUBE_VERB_GET] = "get",       [KUBE_VERB_LIST] = "list",     [KUBE_VERB_WATCH] = "watch",
    [KUBE_VERB_CREATE] = "create", [KUBE_VERB_UPDATE] = "update", [KUBE_VERB_PATCH] = "patch",
    [KUBE_VERB_DELETE] = "delete",
};

const char *kube_verb_name(enum kube_verb verb)
{
    return (unsigned)verb < KUBE_VERB_COUNT ? verb_names[verb] : "other";
}

/* The index of (resource, subresource) in the client's counted names, else n_counted. */
static size_t counted_of(const struct kube_client *c, const struct kube_resource *res,
                         const char *subresource)
{
    char name[96];
    int n = snprintf(name, sizeof(name), "%s%s%s", res && res->resource ? res->resource : "",
                     subresource ? "/" : "", subresource ? subresource : "");
    if (n < 0 || (size_t)n >= sizeof(name))
        return c->n_counted;
    for (size_t i = 0; i < c->n_counted; i++)
        if (strcmp(name, c->counted[i]) == 0)
            return i;
    return c->n_counted;
}

static enum kube_verb verb_of(const struct kube_call *call)
{
    if (call->phase == PHASE_WATCH)
        return KUBE_VERB_WATCH;
    if (strcmp(call->method, "GET") == 0)
        return call->collection ? KUBE_VERB_LIST : KUBE_VERB_GET;
    if (strcmp(call->method, "POST") == 0)
        return KUBE_VERB_CREATE;
    if (strcmp(call->method, "PUT") == 0)
        return KUBE_VERB_UPDATE;
    if (strcmp(call->method, "PATCH") == 0)
        return KUBE_VERB_PATCH;
    return KUBE_VERB_DELETE;
}

unsigned long long kube_client_requests(const struct kube_client *c, enum kube_verb verb,
                                        size_t counted)
{
    if (!c || (unsigned)verb >= KUBE_VERB_COUNT || counted > c->n_counted)
        return 0;
    return c->sent[verb][counted];
}

/* ---- errors ---- */

static enum kube_err err_from_reason(const char *reason)
{
    static const struct {
        const char *reason;
        enum kube_err code;
    } map[] = {
        {"NotFound", KUBE_ERR_NOT_FOUND},
        {"Conflict", KUBE_ERR_CONFLICT},
        {"AlreadyExists", KUBE_ERR_ALREADY_EXISTS},
        {"Gone", KUBE_ERR_GONE},
        {"Expired", KUBE_ERR_GONE},
        {"Forbidden", KUBE_ERR_FORBIDDEN},
        {"Unauthorized", KUBE_ERR_UNAUTHORIZED},
        {"Invalid", KUBE_ERR_INVALID},
        {"BadRequest", KUBE_ERR_BAD_REQUEST},
        {"TooManyRequests", KUBE_ERR_TOO_MANY},
        {"ServiceUnavailable", KUBE_ERR_UNAVAILABLE},
        {"InternalError", KUBE_ERR_UNAVAILABLE},
        {"Timeout", KUBE_ERR_UNAVAILABLE},
    };
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(reason, map[i].reason) == 0)
            return map[i].code;
    return KUBE_ERR_OTHER;
}

static enum kube_err err_from_http(long http)
{
    switch (http) {
    case 400:
        return KUBE_ERR_BAD_REQUEST;
    case 401:
        return KUBE_ERR_UNAUTHORIZED;
    case 403:
        return KUBE_ERR_FORBIDDEN;
    case 404:
        return KUBE_ERR_NOT_FOUND;
    case 409:
        return KUBE_ERR_CONFLICT;
    case 410:
        return KUBE_ERR_GONE;
    case 422:
        return KUBE_ERR_INVALID;
    case 429:
        return KUBE_ERR_TOO_MANY;
    default:
        return http >= 500 ? KUBE_ERR_UNAVAILABLE : KUBE_ERR_OTHER;
    }
}

/* Fills err from an HTTP status and its body (a Status object when the server sent one). */
static void error_from_status(struct kube_error *err, long http, const cJSON *status)
{
    memset(err, 0, sizeof(*err));
    err->http = http;
    const cJSON *reason = cJSON_GetObjectItemCaseSensitive(status, "reason");
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(status, "message");
    if (cJSON_IsString(reason) && reason->valuestring[0]) {
        snprintf(err->reason, sizeof(err->reason), "%s", reason->valuestring);
        err->code = err_from_reason(reason->valuestring);
        if (err->code == KUBE_ERR_OTHER)
            err->code = err_from_http(http);
    } else {
        err->code = err_from_http(http);
        snprintf(err->reason, sizeof(err->reason), "%s", kube_err_name(err->code));
    }
    if (cJSON_IsString(message))
        snprintf(err->message, sizeof(err->message), "%s", message->valuestring);
    else
        snprintf(err->message, sizeof(err->message), "HTTP %ld", http);
}

static void error_simple(struct kube_error *err, enum kube_err code, long http, const char *reason,
                         const char *message)
{
    memset(err, 0, sizeof(*err));
    err->code = code;
    err->http = http;
    snprintf(err->reason, sizeof(err->reason), "%s", reason);
    snprintf(err->message, sizeof(err->message), "%s", message);
}

/* ---- paths ---- */

static bool name_ok(const char *s)
{
    return s && *s && !strpbrk(s, "/?#%") && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

int kube_path(const struct kube_resource *res, const char *ns, const char *name,
              const char *subresource, char *buf, size_t len)
{
    if (!res || !res->version || !name_ok(res->resource))
        return -1;
    if ((name && !name_ok(name)) || (subresource && !name_ok(subresource)) ||
        (subresource && !name))
        return -1;
    int n;
    if (!res->group || !res->group[0])
        n = snprintf(buf, len, "/api/%s", res->version);
    else
        n = snprintf(buf, len, "/apis/%s/%s", res->group, res->version);
    if (n < 0 || (size_t)n >= len)
        return -1;
    size_t off = (size_t)n;
    if (res->namespaced && ns && *ns) {
        if (!name_ok(ns))
            return -1;
        n = snprintf(buf + off, len - off, "/namespaces/%s", ns);
        if (n < 0 || (size_t)n >= len - off)
            return -1;
        off += (size_t)n;
    }
    n = snprintf(buf + off, len - off, "/%s%s%s%s%s", res->resource, name ? "/" : "",
                 name ? name : "", subresource ? "/" : "", subresource ? subresource : "");
    if (n < 0 || (size_t)n >= len - off)
        return -1;
    return 0;
}

int kube_query_escape(const char *s, char *buf, size_t len)
{
    char *e = curl_easy_escape(NULL, s, 0);
    if (!e)
        return -1;
    size_t have = strlen(buf), add = strlen(e);
    int rc = -1;
    if (have + add < len) {
        memcpy(buf + have, e, add + 1);
        rc = 0;
    }
    curl_free(e);
    return rc;
}

/* Appends "&key=escaped(value)" (or "?key=..." first). */
static int add_query(char *url, size_t len, const char *key, const char *value)
{
    size_t have = strlen(url);
    int n = snprintf(url + have, len - have, "%c%s=", strchr(url, '?') ? '&' : '?', key);
    if (n < 0 || (size_t)n >= len - have)
        return -1;
    return kube_query_escape(value, url, len);
}

/* ---- the rate limiter ---- */

static void refill(struct kube_client *c)
{
    uint64_t now = clock_mono_ns();
    c->tokens += (double)(now - c->refilled_ns) / 1e9 * c->qps;
    if (c->tokens > c->burst)
        c->tokens = c->burst;
    c->refilled_ns = now;
}

static void dispatch(struct kube_call *call);

/* Gives tokens to waiting calls in order; arms the timer for the next one. `waited`: called by
 * the timer, so the calls given a token now waited for it. */
static void pump(struct kube_client *c, bool waited)
{
    refill(c);
    while (c->qhead && c->tokens >= 1.0) {
        struct kube_call *call = c->qhead;
        c->qhead = call->qnext;
        if (!c->qhead)
            c->qtail = NULL;
        if (c->qcache_tail == call)
            c->qcache_tail = NULL;
        call->waited = waited;
        call->qnext = NULL;
        call->queued = false;
        c->queued--;
        c->tokens -= 1.0;
        dispatch(call);
    }
    if (c->qhead) {
        double wait = (1.0 - c->tokens) / c->qps;
        long us = (long)(wait * 1e6) + 1;
        struct timeval tv = {.tv_sec = us / 1000000, .tv_usec = us % 1000000};
        evtimer_add(c->limiter, &tv);
    }
}

static void on_limiter(evutil_socket_t fd, short what, void *arg)
{
    pump(arg, true);
}

/* Queues a call for a token: at the end, or a cache read after the cache reads that lead the
 * queue (FIFO among them). */
static void enqueue(struct kube_call *call)
{
    struct kube_client *c = call->c;
    call->queued = true;
    call->qnext = NULL;
    if (call->cache_read) {
        struct kube_call **at = c->qcache_tail ? &c->qcache_tail->qnext : &c->qhead;
        call->qnext = *at;
        *at = call;
        c->qcache_tail = call;
        if (!call->qnext)
            c->qtail = call;
    } else {
        if (c->qtail)
            c->qtail->qnext = call;
        else
            c->qhead = call;
        c->qtail = call;
    }
    c->queued++;
    if (c->queued == 1)
        pump(c, false);
}

/* ---- call life ---- */

static void call_free(struct kube_call *call)
{
    struct kube_client *c = call->c;
    if (call->gone)
        *call->gone = true;
    if (call->queued) {
        struct kube_call **pp = &c->qhead;
        struct kube_call *prev = NULL;
        while (*pp != call) {
            prev = *pp;
            pp = &(*pp)->qnext;
        }
        *pp = call->qnext;
        if (c->qtail == call)
            c->qtail = prev;
        if (c->qcache_tail == call)
            c->qcache_tail = prev; /* the cache reads lead the queue: prev is one, or NULL */
        c->queued--;
    }
    if (call->req)
        http_request_cancel(call->req);
    if (call->fail_ev)
        event_free(call->fail_ev);
    if (call->prev)
        call->prev->next = call->next;
    else
        c->all = call->next;
    if (call->next)
        call->next->prev = call->prev;
    free(call->url);
    free(call->body);
    free(call);
}

/*
 * Keeps c->unreachable: set by a transport failure or a 5xx, cleared by any answer of the API
 * server's own (a 2xx, or a 4xx Status: the server is there and says no). Clearing it calls
 * on_back, so that whatever waits out a backoff can try again at once.
 */
static void note_outcome(struct kube_client *c, const struct kube_error *err)
{
    bool down = err && (err->code == KUBE_ERR_TRANSPORT || err->code == KUBE_ERR_UNAVAILABLE);
    if (down || !c->unreachable) {
        c->unreachable = c->unreachable || down;
        return;
    }
    c->unreachable = false;
    if (c->on_back)
        c->on_back(c->on_back_arg);
}

/* Hands the outcome to the caller and frees the call. Takes ownership of obj. */
static void call_finish(struct kube_call *call, cJSON *obj, const struct kube_error *err)
{
    note_outcome(call->c, err);
    call->in_done = true;
    call->req = NULL;
    call->done(obj, err, call->arg);
    cJSON_Delete(obj);
    call_free(call);
}

static void on_fail_event(evutil_socket_t fd, short what, void *arg)
{
    struct kube_call *call = arg;
    struct kube_error err;
    error_simple(&err, KUBE_ERR_TRANSPORT, 0, "Transport", "could not start the HTTP request");
    call_finish(call, NULL, &err);
}

static void on_http_done(struct http_request *req, const struct http_response *resp, void *arg);
static void on_http_line(struct http_request *req, const char *line, size_t len, void *arg);

static void dispatch(struct kube_call *call)
{
    struct kube_client *c = call->c;
    char ctype[128] = "";
    const char *headers[4] = {"Accept: application/json", c->ua_header, NULL, NULL};
    if (call->body) {
        snprintf(ctype, sizeof(ctype), "Content-Type: %s", call->content_type);
        headers[2] = ctype;
    }
    struct http_request_opts o = {
        .method = call->method,
        .url = call->url,
        .headers = headers,
        .bearer_token = kubeconfig_token(c->kc),
        .body = call->body,
        .body_len = call->body_len,
        .tls = &c->tls,
        .connect_timeout_ms = c->connect_timeout_ms,
        .timeout_ms = call->timeout_ms,
        .on_line = call->phase == PHASE_WATCH ? on_http_line : NULL,
        .on_done = on_http_done,
        .arg = call,
    };
    call->req = http_request_start(c->http, &o);
    if (call->req)
        c->sent[verb_of(call)][call->counted]++;
    if (!call->req) {
        /* Report from the loop, never from inside the caller's kube_* call. */
        if (!call->fail_ev)
            call->fail_ev = evtimer_new(c->base, on_fail_event, call);
        struct timeval tv = {0, 0};
        if (call->fail_ev)
            evtimer_add(call->fail_ev, &tv);
        else
            log_error("kube: cannot start a request or report it; the call is stuck", "url=%s",
                      call->url);
    }
}

static struct kube_call *call_new(struct kube_client *c, enum call_phase phase, const char *method,
                                  const char *path, const char *query_url, kube_done_fn done,
                                  void *arg)
{
    if (!done)
        return NULL;
    struct kube_call *call = xcalloc(1, sizeof(*call));
    call->c = c;
    call->phase = phase;
    snprintf(call->method, sizeof(call->method), "%s", method);
    call->done = done;
    call->arg = arg;
    call->timeout_ms = c->timeout_ms;
    if (query_url)
        call->url = strdup(query_url);
    else if (asprintf(&call->url, "%s%s", c->kc->server, path) < 0)
        call->url = NULL;
    if (!call->url) {
        free(call);
        return NULL;
    }
    call->next = c->all;
    if (c->all)
        c->all->prev = call;
    c->all = call;
    return call;
}

static int call_set_body(struct kube_call *call, const cJSON *obj, const char *content_type)
{
    call->body = cJSON_PrintUnformatted(obj);
    if (!call->body)
        return -1;
    call->body_len = strlen(call->body);
    call->content_type = content_type;
    return 0;
}

/* ---- responses ---- */

static void retry_step(struct kube_call *call, cJSON *obj);

static void on_http_done(struct http_request *req, const struct http_response *resp, void *arg)
{
    struct kube_call *call = arg;
    call->req = NULL;
    if (call->waited && resp->status != 0)
        call->c->throttled_s += 1.0 / call->c->qps;
    call->waited = false;
    struct kube_error err;
    if (resp->curl_code != 0 && resp->status == 0) {
        error_simple(&err, KUBE_ERR_TRANSPORT, 0, "Transport", resp->error);
        call_finish(call, NULL, &err);
        return;
    }
    if (call->phase == PHASE_WATCH && resp->status >= 200 && resp->status < 300) {
        if (resp->curl_code != 0) {
            error_simple(&err, KUBE_ERR_TRANSPORT, resp->status, "Transport", resp->error);
            call_finish(call, NULL, &err);
        } else {
            call_finish(call, NULL, NULL);
        }
        return;
    }
    cJSON *obj = resp->body_len ? json_parse(resp->body, resp->body_len, NULL, false) : NULL;
    if (resp->status < 200 || resp->status >= 300) {
        error_from_status(&err, resp->status, obj);
        if (resp->curl_code != 0 && !obj)
            snprintf(err.message, sizeof(err.message), "%s", resp->error);
        if (call->phase == PHASE_RETRY_PUT && err.code == KUBE_ERR_CONFLICT &&
            --call->attempts_left > 0) {
            cJSON_Delete(obj);
            retry_step(call, NULL);
            return;
        }
        call_finish(call, obj, &err);
        return;
    }
    if (resp->curl_code != 0) {
        error_simple(&err, KUBE_ERR_TRANSPORT, resp->status, "Transport", resp->error);
        call_finish(call, obj, &err);
        return;
    }
    if (resp->body_len && !obj) {
        error_simple(&err, KUBE_ERR_DECODE, resp->status, "Decode",
                     "the response body is not JSON");
        call_finish(call, NULL, &err);
        return;
    }
    if (call->phase == PHASE_RETRY_GET) {
        retry_step(call, obj);
        return;
    }
    call_finish(call, obj, NULL);
}

static void on_http_line(struct http_request *req, const char *line, size_t len, void *arg)
{
    struct kube_call *call = arg;
    cJSON *ev = json_parse(line, len, NULL, false);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    cJSON *object = cJSON_GetObjectItemCaseSensitive(ev, "object");
    if (!cJSON_IsString(type) || !cJSON_IsObject(object)) {
        struct kube_error err;
        error_simple(&err, KUBE_ERR_DECODE, 200, "Decode", "a watch event is not valid JSON");
        cJSON_Delete(ev);
        http_request_cancel(req);
        call_finish(call, NULL, &err);
        return;
    }
    cJSON_DetachItemViaPointer(ev, object);
    note_outcome(call->c, NULL);
    bool gone = false;
    call->gone = &gone;
    call->on_event(type->valuestring, object, call->arg);
    if (!gone)
        call->gone = NULL;
    cJSON_Delete(ev);
}

/* update_retry: after a GET (obj set) mutate and PUT; after a 409 (obj NULL) GET again. */
static void retry_step(struct kube_call *call, cJSON *obj)
{
    free(call->body);
    call->body = NULL;
    if (!obj) {
        call->phase = PHASE_RETRY_GET;
        snprintf(call->method, sizeof(call->method), "GET");
        enqueue(call);
        return;
    }
    int rc = call->mutate(obj, call->arg);
    if (rc == 1) {
        call_finish(call, obj, NULL);
        return;
    }
    if (rc != 0) {
        struct kube_error err;
        error_simple(&err, KUBE_ERR_OTHER, 0, "Aborted", "the change was abandoned by its caller");
        call_finish(call, obj, &err);
        return;
    }
    if (call_set_body(call, obj, "application/json") != 0) {
        struct kube_error err;
        error_simple(&err, KUBE_ERR_OTHER, 0, "NoMemory", "cannot serialise the object");
        call_finish(call, obj, &err);
        return;
    }
    cJSON_Delete(obj);
    call->phase = PHASE_RETRY_PUT;
    snprintf(call->method, sizeof(call->method), "PUT");
    enqueue(call);
}

/* ---- public ---- */

struct kube_client *kube_client_new(struct event_base *base, struct kubeconfig *kc,
                                    const struct kube_client_opts *opts, char *err, size_t errlen)
{
    struct kube_client_opts none = {0};
    if (!opts)
        opts = &none;
    struct kube_client *c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->kc = kc;
    c->http = http_client_new(base);
    c->limiter = evtimer_new(base, on_limiter, c);
    if (!c->http || !c->limiter) {
        snprintf(err, errlen, "kube client: cannot initialise libcurl or libevent");
        kube_client_free(c);
        return NULL;
    }
    c->counted = opts->counted;
    c->n_counted = opts->counted ? opts->n_counted : 0;
    if (c->n_counted > KUBE_COUNTED_MAX)
        c->n_counted = KUBE_COUNTED_MAX;
    c->qps = opts->qps > 0 ? opts->qps : KUBE_DEFAULT_QPS;
    c->burst = opts->burst > 0 ? opts->burst : KUBE_DEFAULT_BURST;
    c->tokens = c->burst;
    c->refilled_ns = clock_mono_ns();
    c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : KUBE_DEFAULT_TIMEOUT_MS;
    c->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 10000;
    snprintf(c->ua_header, sizeof(c->ua_header), "User-Agent: %s",
             opts->user_agent ? opts->user_agent : KUBE_DEFAULT_USER_AGENT);
    c->tls = (struct http_tls){
        .ca_file = kc->ca_file,
        .ca_data = kc->ca_data,
        .ca_len = kc->ca_len,
        .cert_file = kc->cert_file,
        .cert_data = kc->cert_data,
        .cert_len = kc->cert_len,
        .key_file = kc->key_file,
        .key_data = kc->key_data,
        .key_len = kc->key_len,
        .insecure = kc->insecure,
    };
    if (kc->insecure)
        log_warn("TLS verification of the Kubernetes API server is OFF "
                 "(insecure-skip-tls-verify): anyone on the path can impersonate it",
                 "server=%s source=%s", kc->server, kc->source);
    return c;
}

void kube_client_on_back(struct kube_client *c, void (*cb)(void *arg), void *arg)
{
    c->on_back = cb;
    c->on_back_arg = arg;
}

void kube_client_free(struct kube_client *c)
{
    if (!c)
        return;
    while (c->all)
        call_free(c->all);
    if (c->limiter)
        event_free(c->limiter);
    http_client_free(c->http);
    free(c);
}

struct event_base *kube_client_base(const struct kube_client *c)
{
    return c->base;
}

size_t kube_client_queued(const struct kube_client *c)
{
    return c->queued;
}

double kube_client_throttled_seconds(const struct kube_client *c)
{
    return c->throttled_s;
}

size_t kube_client_pending(const struct kube_client *c)
{
    size_t n = 0;
    for (const struct kube_call *call = c->all; call; call = call->next)
        n += call->on_event == NULL;
    return n;
}

void kube_call_cancel(struct kube_call *call)
{
    if (!call || call->in_done)
        return;
    call_free(call);
}

struct kube_call *kube_get(struct kube_client *c, const struct kube_resource *res, const char *ns,
                           const char *name, const char *subresource, kube_done_fn done, void *arg)
{
    char path[KUBE_PATH_MAX];
    if (!name || kube_path(res, ns, name, subresource, path, sizeof(path)) != 0)
        return NULL;
    struct kube_call *call = call_new(c, PHASE_PLAIN, "GET", path, NULL, done, arg);
    if (call) {
        call->counted = counted_of(c, res, subresource);
        enqueue(call);
    }
    return call;
}

/* The collection URL with the list/watch query. */
static int list_url(struct kube_client *c, const struct kube_resource *res, const char *ns,
                    const struct kube_list_opts *o, bool watch, char *url, size_t len)
{
    char path[KUBE_PATH_MAX];
    if (kube_path(res, ns, NULL, NULL, path, sizeof(path)) != 0)
        return -1;
    int n = snprintf(url, len, "%s%s", c->kc->server, path);
    if (n < 0 || (size_t)n >= len)
        return -1;
    struct kube_list_opts none = {0};
    if (!o)
        o = &none;
    char num[32];
    int rc = 0;
    if (watch) {
        rc |= add_query(url, len, "watch", "true");
        if (!o->no_bookmarks)
            rc |= add_query(url, len, "allowWatchBookmarks", "true");
        snprintf(num, sizeof(num), "%ld", o->timeout_seconds > 0 ? o->timeout_seconds : 300);
        rc |= add_query(url, len, "timeoutSeconds", num);
    }
    if (o->label_selector && *o->label_selector)
        rc |= add_query(url, len, "labelSelector", o->label_selector);
    if (o->field_selector && *o->field_selector)
        rc |= add_query(url, len, "fieldSelector", o->field_selector);
    if (!watch && o->limit > 0) {
        snprintf(num, sizeof(num), "%ld", o->limit);
        rc |= add_query(url, len, "limit", num);
    }
    if (!watch && o->cont && *o->cont)
        rc |= add_query(url, len, "continue", o->cont);
    if (o->resource_version && *o->resource_version)
        rc |= add_query(url, len, "resourceVersion", o->resource_version);
    return rc ? -1 : 0;
}

struct kube_call *kube_list(struct kube_client *c, const struct kube_resource *res, const char *ns,
                            const struct kube_list_opts *opts, kube_done_fn done, void *arg)
{
    char url[KUBE_URL_MAX];
    if (list_url(c, res, ns, opts, false, url, sizeof(url)) != 0)
        return NULL;
    struct kube_call *call = call_new(c, PHASE_PLAIN, "GET", NULL, url, done, arg);
    if (call) {
        call->collection = true;
        call->cache_read = opts && opts->cache_read;
        call->counted = counted_of(c, res, NULL);
        enqueue(call);
    }
    return call;
}

struct kube_call *kube_watch(struct kube_client *c, const struct kube_resource *res, const char *ns,
                             const struct kube_list_opts *opts, kube_event_fn on_event,
                             kube_done_fn done, void *arg)
{
    char url[KUBE_URL_MAX];
    if (!on_event || list_url(c, res, ns, opts, true, url, sizeof(url)) != 0)
        return NULL;
    struct kube_call *call = call_new(c, PHASE_WATCH, "GET", NULL, url, done, arg);
    if (!call)
        return NULL;
    call->on_event = on_event;
    call->cache_read = opts && opts->cache_read;
    call->counted = counted_of(c, res, NULL);
    long secs = opts && opts->timeout_seconds > 0 ? opts->timeout_seconds : 300;
    /* The server ends the stream after timeoutSeconds; ours is only a backstop. */
    call->timeout_ms = (secs + 30) * 1000;
    enqueue(call);
    return call;
}

static struct kube_call *write_call(struct kube_client *c, const char *method,
                                    const struct kube_resource *res, const char *ns,
                                    const char *name, const char *subresource, const cJSON *obj,
                                    const char *content_type, kube_done_fn done, void *arg)
{
    char path[KUBE_PATH_MAX];
    if (kube_path(res, ns, name, subresource, path, sizeof(path)) != 0)
        return NULL;
    struct kube_call *call = call_new(c, PHASE_PLAIN, method, path, NULL, done, arg);
    if (!call)
        return NULL;
    call->counted = counted_of(c, res, subresource);
    if (obj && call_set_body(call, obj, content_type) != 0) {
        call_free(call);
        return NULL;
    }
    enqueue(call);
    return call;
}

struct kube_call *kube_create(struct kube_client *c, const struct kube_resource *res,
                              const char *ns, const cJSON *obj, kube_done_fn done, void *arg)
{
    if (!obj)
        return NULL;
    return write_call(c, "POST", res, ns, NULL, NULL, obj, "application/json", done, arg);
}

struct kube_call *kube_update(struct kube_client *c, const struct kube_resource *res,
                              const char *ns, const char *name, const char *subresource,
                              const cJSON *obj, kube_done_fn done, void *arg)
{
    if (!obj || !name)
        return NULL;
    return write_call(c, "PUT", res, ns, name, subresource, obj, "application/json", done, arg);
}

struct kube_call *kube_patch(struct kube_client *c, const struct kube_resource *res, const char *ns,
                             const char *name, const char *subresource, enum kube_patch_type type,
                             const cJSON *patch, kube_done_fn done, void *arg)
{
    static const char *const types[] = {
        [KUBE_PATCH_MERGE] = "application/merge-patch+json",
        [KUBE_PATCH_JSON] = "application/json-patch+json",
        [KUBE_PATCH_STRATEGIC] = "application/strategic-merge-patch+json",
    };
    if (!patch || !name || (unsigned)type > KUBE_PATCH_STRATEGIC)
        return NULL;
    return write_call(c, "PATCH", res, ns, name, subresource, patch, types[type], done, arg);
}

struct kube_call *kube_delete(struct kube_client *c, const struct kube_resource *res,
                              const char *ns, const char *name, const cJSON *options,
                              kube_done_fn done, void *arg)
{
    if (!name)
        return NULL;
    return write_call(c, "DELETE", res, ns, name, NULL, options, "application/json", done, arg);
}

struct kube_call *kube_update_retry(struct kube_client *c, const struct kube_resource *res,
                                    const char *ns, const char *name, const char *subresource,
                                    int attempts, kube_mutate_fn mutate, kube_done_fn done,
                                    void *arg)
{
    char path[KUBE_PATH_MAX];
    if (!mutate || !name || kube_path(res, ns, name, subresource, path, sizeof(path)) != 0)
        return NULL;
    struct kube_call *call = call_new(c, PHASE_RETRY_GET, "GET", path, NULL, done, arg);
    if (!call)
        return NULL;
    call->mutate = mutate;
    call->counted = counted_of(c, res, subresource);
    call->attempts_left = attempts > 0 ? attempts : 1;
    enqueue(call);
    return call;
}
