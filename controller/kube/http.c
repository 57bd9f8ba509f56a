/*
 * http: libcurl multi on a libevent base. See http.h.
 *
 * The one subtlety is re-entrancy: user callbacks run inside curl_multi_socket_action (the
 * write callback), where curl forbids adding or removing easy handles. So while `depth` > 0,
 * starting a request only queues it (`pending`), and cancelling one only marks it; both are
 * settled in settle() once curl has returned.
 */
#include "controller/kube/http.h"

#include <curl/curl.h>
#include <curl/header.h>
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A body or a stream line larger than this fails the request: protects the control thread
 * from a runaway response. */
#define HTTP_MAX_BODY (256u << 20)

struct http_client {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;          /* curl's single timeout */
    int depth;                    /* > 0 while inside curl_multi_socket_action */
    struct http_request *all;     /* every live request, doubly linked */
    struct http_request *pending; /* started during a callback, not yet added to multi */
    size_t active;                /* live requests */
};

struct http_request {
    struct http_client *c;
    struct http_request *prev, *next; /* in c->all */
    struct http_request *pending_next;
    CURL *easy;
    struct curl_slist *headers;
    http_line_fn on_line;
    http_done_fn on_done;
    void *arg;
    char *buf; /* the body, or a stream's unfinished line */
    size_t len, cap;
    bool status_known; /* stream decided (first body byte seen) */
    bool stream;       /* 2xx with on_line: lines go to on_line, not buf */
    bool added;        /* in curl's multi handle */
    bool is_pending;   /* in c->pending */
    bool cancelled;    /* cancelled during a callback: removed in settle() */
    bool in_done;      /* on_done is running: cancel is a no-op */
    bool too_big;      /* body or line over HTTP_MAX_BODY */
    bool head_done;    /* headers_only: the final response head is in, the transfer stopped */
    char errbuf[CURL_ERROR_SIZE];
};

static void settle(struct http_client *c);

static void request_free(struct http_request *r)
{
    struct http_client *c = r->c;
    if (r->added)
        curl_multi_remove_handle(c->multi, r->easy);
    if (r->is_pending) {
        struct http_request **pp = &c->pending;
        while (*pp != r)
            pp = &(*pp)->pending_next;
        *pp = r->pending_next;
    }
    if (r->prev)
        r->prev->next = r->next;
    else
        c->all = r->next;
    if (r->next)
        r->next->prev = r->prev;
    c->active--;
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    free(r->buf);
    free(r);
}

/* ---- buffers and lines ---- */

static bool buf_append(struct http_request *r, const char *p, size_t n)
{
    if (r->len + n + 1 > HTTP_MAX_BODY) {
        r->too_big = true;
        return false;
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 4096;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *nb = realloc(r->buf, cap);
        if (!nb)
            return false;
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, p, n);
    r->len += n;
    r->buf[r->len] = '\0';
    return true;
}

/* Hands every complete line in buf to on_line. Returns false when the request got cancelled. */
static bool deliver_lines(struct http_request *r, bool flush_partial)
{
    size_t start = 0;
    while (start < r->len) {
        char *nl = memchr(r->buf + start, '\n', r->len - start);
        if (!nl && !flush_partial)
            break;
        size_t end = nl ? (size_t)(nl - r->buf) : r->len;
        size_t next = nl ? end + 1 : r->len;
        if (end > start && r->buf[end - 1] == '\r')
            end--;
        r->buf[end] = '\0';
        if (end > start)
            r->on_line(r, r->buf + start, end - start, r->arg);
        start = next;
        if (r->cancelled)
            return false;
    }
    memmove(r->buf, r->buf + start, r->len - start);
    r->len -= start;
    if (r->buf)
        r->buf[r->len] = '\0';
    return true;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct http_request *r = ud;
    size_t n = size * nmemb;
    if (r->cancelled)
        return 0;
    if (!r->status_known) {
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        r->stream = r->on_line && status >= 200 && status < 300;
        r->status_known = true;
    }
    if (!buf_append(r, ptr, n))
        return 0;
    if (r->stream && !deliver_lines(r, false))
        return 0;
    return n;
}

/* headers_only: stops the transfer at the blank line that ends the final response head (a
 * 1xx head is followed by another). curl reports the stop as a write error; finish() turns it
 * back into a completion. */
static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct http_request *r = ud;
    size_t n = size * nmemb;
    if (r->cancelled)
        return 0;
    if (n == 0 || ptr[0] == '\r' || ptr[0] == '\n') {
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200) {
            r->head_done = true;
            return 0;
        }
    }
    return n;
}

/* ---- completion ---- */

static void finish(struct http_client *c, struct http_request *r, CURLcode res)
{
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(c->multi, r->easy);
    r->added = false;
    if (r->stream && res == CURLE_OK && r->len > 0) {
        /* The last line may lack its '\n'. Its on_line may cancel the request (kube.c does on
         * an undecodable line, informers on an ERROR event): as inside curl's callbacks, the
         * cancel only marks it, and it is freed here, once, when on_line has returned. */
        c->depth++;
        bool alive = deliver_lines(r, true);
        c->depth--;
        if (!alive) {
            request_free(r);
            return;
        }
    }
    if (r->stream)
        r->len = 0;
    if (res == CURLE_WRITE_ERROR && r->too_big)
        snprintf(r->errbuf, sizeof(r->errbuf), "response larger than %u bytes", HTTP_MAX_BODY);
    if (res == CURLE_WRITE_ERROR && r->head_done)
        res = CURLE_OK; /* headers_only: stopped on purpose once the head was in */
    long os_errno = 0;
    if (res != CURLE_OK)
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
    struct http_response resp = {
        .status = status,
        .body = r->buf && !r->stream ? r->buf : "",
        .body_len = r->stream ? 0 : r->len,
        .curl_code = (int)res,
        .error = res == CURLE_OK ? "" : (r->errbuf[0] ? r->errbuf : curl_easy_strerror(res)),
        .os_errno = (int)os_errno,
    };
    r->in_done = true;
    r->on_done(r, &resp, r->arg);
    request_free(r);
}

static void read_messages(struct http_client *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct http_request *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (r->cancelled)
            continue; /* freed by settle() */
        finish(c, r, msg->data.result);
    }
}

/* Runs after curl returns: completions, then deferred cancels and starts. */
static void settle(struct http_client *c)
{
    if (c->depth > 0)
        return;
    read_messages(c);
    for (struct http_request *r = c->all, *next; r; r = next) {
        next = r->next;
        if (r->cancelled)
            request_free(r);
    }
    while (c->pending) {
        struct http_request *r = c->pending;
        c->pending = r->pending_next;
        r->is_pending = false;
        if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
            struct http_response resp = {.curl_code = CURLE_FAILED_INIT,
                                         .body = "",
                                         .error = "could not add the request to curl"};
            r->in_done = true;
            r->on_done(r, &resp, r->arg);
            request_free(r);
            continue;
        }
        r->added = true;
    }
}

static void socket_action(struct http_client *c, curl_socket_t fd, int flags)
{
    int running = 0;
    c->depth++;
    curl_multi_socket_action(c->multi, fd, flags, &running);
    c->depth--;
    settle(c);
}

/* ---- libevent <-> curl ---- */

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    int flags = 0;
    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    socket_action(arg, fd, flags);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    socket_action(arg, CURL_SOCKET_TIMEOUT, 0);
}

static int curl_socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct event *ev = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (ev)
            event_free(ev);
        return 0;
    }
    short flags = EV_PERSIST;
    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        flags |= EV_READ;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        flags |= EV_WRITE;
    if (ev) {
        event_del(ev);
        event_assign(ev, c->base, s, flags, on_socket_event, c);
    } else {
        ev = event_new(c->base, s, flags, on_socket_event, c);
        if (!ev)
            return -1;
        curl_multi_assign(c->multi, s, ev);
    }
    event_add(ev, NULL);
    return 0;
}

static int curl_timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_client *c = userp;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    return 0;
}

/* ---- public ---- */

struct http_client *http_client_new(struct event_base *base)
{
    /* curl_global_init is idempotent and thread-safe since curl 7.84. */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    struct http_client *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->base = base;
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, on_timer, c);
    if (!c->multi || !c->timer) {
        if (c->multi)
            curl_multi_cleanup(c->multi);
        if (c->timer)
            event_free(c->timer);
        free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, curl_socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, curl_timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

void http_client_free(struct http_client *c)
{
    if (!c)
        return;
    while (c->all)
        request_free(c->all);
    curl_multi_cleanup(c->multi);
    event_free(c->timer);
    free(c);
}

const char *http_response_header(struct http_request *req, const char *name, size_t *count)
{
    struct curl_header *h = NULL;
    unsigned origin = CURLH_HEADER | CURLH_TRAILER;
    CURLHcode rc = curl_easy_header(req->easy, name, 0, origin, -1, &h);
    if (count)
        *count = rc == CURLHE_OK ? h->amount : 0;
    if (rc != CURLHE_OK)
        return NULL;
    if (h->amount > 1 &&
        curl_easy_header(req->easy, name, h->amount - 1, origin, -1, &h) != CURLHE_OK)
        return NULL;
    return h->value;
}

size_t http_client_active(const struct http_client *c)
{
    return c->active;
}

static bool set_tls(CURL *e, const struct http_tls *t)
{
    bool ok = true;
    if (t->ca_data && t->ca_len) {
        struct curl_blob b = {
            .data = (void *)t->ca_data, .len = t->ca_len, .flags = CURL_BLOB_COPY};
        ok &= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &b) == CURLE_OK;
    } else if (t->ca_file) {
        ok &= curl_easy_setopt(e, CURLOPT_CAINFO, t->ca_file) == CURLE_OK;
    }
    if (t->cert_data && t->cert_len) {
        struct curl_blob b = {
            .data = (void *)t->cert_data, .len = t->cert_len, .flags = CURL_BLOB_COPY};
        ok &= curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &b) == CURLE_OK;
        ok &= curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM") == CURLE_OK;
    } else if (t->cert_file) {
        ok &= curl_easy_setopt(e, CURLOPT_SSLCERT, t->cert_file) == CURLE_OK;
    }
    if (t->key_data && t->key_len) {
        struct curl_blob b = {
            .data = (void *)t->key_data, .len = t->key_len, .flags = CURL_BLOB_COPY};
        ok &= curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &b) == CURLE_OK;
        ok &= curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM") == CURLE_OK;
    } else if (t->key_file) {
        ok &= curl_easy_setopt(e, CURLOPT_SSLKEY, t->key_file) == CURLE_OK;
    }
    if (t->insecure) {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    } else {
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    return ok;
}

static bool set_options(struct http_request *r, const struct http_request_opts *o)
{
    CURL *e = r->easy;
    bool ok = true;
    ok &= curl_easy_setopt(e, CURLOPT_URL, o->url) == CURLE_OK;
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    if (!o->on_line && !o->headers_only)
        curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (o->no_proxy)
        ok &= curl_easy_setopt(e, CURLOPT_PROXY, "") == CURLE_OK; /* "": no proxy at all */
    if (o->fresh_connection) {
        curl_easy_setopt(e, CURLOPT_FRESH_CONNECT, 1L);
        curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L);
    }
    if (o->headers_only) {
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    }
    if (o->h2_prior_knowledge)
        ok &= curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                               (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE) == CURLE_OK;
    if (o->body) {
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
        ok &= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, o->body) == CURLE_OK;
    }
    if (strcmp(o->method, "GET") == 0)
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    else
        ok &= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o->method) == CURLE_OK;

    /* "Expect:" stops curl waiting for a 100 Continue before sending a large body. */
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    for (const char *const *p = o->headers; h && p && *p; p++)
        h = curl_slist_append(h, *p);
    if (h && o->bearer_token) {
        size_t n = strlen(o->bearer_token) + 32;
        char *line = malloc(n);
        if (line) {
            snprintf(line, n, "Authorization: Bearer %s", o->bearer_token);
            h = curl_slist_append(h, line);
            free(line);
        } else {
            h = NULL;
        }
    }
    if (!h)
        return false;
    r->headers = h;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
    if (o->tls)
        ok &= set_tls(e, o->tls);
    return ok;
}

struct http_request *http_request_start(struct http_client *c, const struct http_request_opts *o)
{
    if (!o->method || !o->url || !o->on_done)
        return NULL;
    struct http_request *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->c = c;
    r->on_line = o->on_line;
    r->on_done = o->on_done;
    r->arg = o->arg;
    r->easy = curl_easy_init();
    if (!r->easy || !set_options(r, o)) {
        if (r->easy)
            curl_easy_cleanup(r->easy);
        curl_slist_free_all(r->headers);
        free(r);
        return NULL;
    }
    r->next = c->all;
    if (c->all)
        c->all->prev = r;
    c->all = r;
    c->active++;
    if (c->depth > 0) {
        r->is_pending = true;
        struct http_request **pp = &c->pending;
        while (*pp)
            pp = &(*pp)->pending_next;
        *pp = r;
        return r;
    }
    if (curl_multi_add_handle(c->multi, r->easy) != CURLM_OK) {
        request_free(r);
        return NULL;
    }
    r->added = true;
    return r;
}

void http_request_cancel(struct http_request *r)
{
    if (!r || r->in_done || r->cancelled)
        return;
    /* Inside a callback, only a request curl does not hold yet (pending) is freed at once. */
    if (r->c->depth > 0 && !r->is_pending) {
        r->cancelled = true;
        return;
    }
    request_free(r);
}
