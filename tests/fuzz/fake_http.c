/*
 * fake_http: a scripted stand-in for controller/http.c. See fake_http.h.
 *
 * The deferral rules follow http.c: a cancel from inside an on_line callback of the same
 * client only marks the request (it is freed once the callbacks return); on_done runs outside
 * any on_line, and a cancel from inside a request's own on_done does nothing.
 */
#include "fake_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/kube/http.h"

struct http_client {
    struct event_base *base;
    int depth; /* inside an on_line callback of one of its requests */
    size_t active;
};

struct http_request {
    struct http_client *c;
    struct http_request *prev, *next; /* every live request, oldest first */
    char *what;                       /* "METHOD URL" */
    char *body;
    http_line_fn on_line;
    http_done_fn on_done;
    void *arg;
    bool cancelled; /* during a callback: freed when it returns */
    bool in_done;
};

static struct http_request *head, *tail;
static bool tracing;
static void (*on_start)(const char *what, const char *body, void *arg);
static void *on_start_arg;

void fake_http_on_start(void (*fn)(const char *what, const char *body, void *arg), void *arg)
{
    on_start = fn;
    on_start_arg = arg;
}

void fake_http_trace(bool on)
{
    tracing = on;
}

static void request_free(struct http_request *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        tail = r->prev;
    r->c->active--;
    free(r->what);
    free(r->body);
    free(r);
}

/* Frees the requests of c that were cancelled during its callbacks. */
static void settle(struct http_client *c)
{
    for (struct http_request *r = head, *next; r; r = next) {
        next = r->next;
        if (r->c == c && r->cancelled)
            request_free(r);
    }
}

struct http_client *http_client_new(struct event_base *base)
{
    struct http_client *c = calloc(1, sizeof(*c));
    if (c)
        c->base = base;
    return c;
}

void http_client_free(struct http_client *c)
{
    if (!c)
        return;
    for (struct http_request *r = head, *next; r; r = next) {
        next = r->next;
        if (r->c == c)
            request_free(r);
    }
    free(c);
}

struct http_request *http_request_start(struct http_client *c, const struct http_request_opts *o)
{
    if (!o->method || !o->url || !o->on_done)
        return NULL;
    struct http_request *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    size_t n = strlen(o->method) + strlen(o->url) + 2;
    r->what = malloc(n);
    r->body = malloc(o->body ? o->body_len + 1 : 1);
    if (!r->what || !r->body) {
        free(r->what);
        free(r->body);
        free(r);
        return NULL;
    }
    snprintf(r->what, n, "%s %s", o->method, o->url);
    if (o->body && o->body_len)
        memcpy(r->body, o->body, o->body_len);
    r->body[o->body ? o->body_len : 0] = '\0';
    r->c = c;
    r->on_line = o->on_line;
    r->on_done = o->on_done;
    r->arg = o->arg;
    r->prev = tail;
    if (tail)
        tail->next = r;
    else
        head = r;
    tail = r;
    c->active++;
    if (tracing)
        printf("http: start %s %s\n", r->what, r->body);
    if (on_start)
        on_start(r->what, r->body, on_start_arg);
    return r;
}

void http_request_cancel(struct http_request *r)
{
    if (!r || r->in_done || r->cancelled)
        return;
    if (tracing)
        printf("http: cancel %s\n", r->what);
    if (r->c->depth > 0) {
        r->cancelled = true;
        return;
    }
    request_free(r);
}

size_t http_client_active(const struct http_client *c)
{
    return c->active;
}

/* The scripted answers carry no header fields. */
const char *http_response_header(struct http_request *req, const char *name, size_t *count)
{
    if (count)
        *count = 0;
    return NULL;
}

size_t fake_http_pending(void)
{
    size_t n = 0;
    for (struct http_request *r = head; r; r = r->next)
        n += !r->cancelled;
    return n;
}

struct http_request *fake_http_pick(const char *needle, size_t len)
{
    struct http_request *oldest = NULL;
    for (struct http_request *r = head; r; r = r->next) {
        if (r->cancelled)
            continue;
        if (!oldest)
            oldest = r;
        if (len && memmem(r->what, strlen(r->what), needle, len))
            return r;
    }
    return oldest;
}

struct http_request *fake_http_pick_plain(void)
{
    for (struct http_request *r = head; r; r = r->next) {
        if (!r->cancelled && !r->on_line)
            return r;
    }
    return NULL;
}

const char *fake_http_what(const struct http_request *r)
{
    return r->what;
}

const char *fake_http_body(const struct http_request *r)
{
    return r->body;
}

static void done(struct http_request *r, long status, const char *body, size_t len, int curl_code)
{
    /* The collected body is NUL-terminated, as http.c's buffer is. */
    char *copy = malloc(len + 1);
    if (!copy)
        abort();
    if (len)
        memcpy(copy, body, len);
    copy[len] = '\0';
    struct http_response resp = {
        .status = status,
        .body = copy,
        .body_len = len,
        .curl_code = curl_code,
        .error = curl_code ? "Connection reset by peer (fake)" : "",
    };
    if (tracing)
        printf("http: done %s -> %ld (curl %d) %.*s\n", r->what, status, curl_code, (int)len, body);
    struct http_client *c = r->c;
    r->in_done = true;
    r->on_done(r, &resp, r->arg);
    request_free(r);
    free(copy);
    settle(c);
}

void fake_http_answer(struct http_request *r, long status, const char *body, size_t len,
                      bool keep_open, bool broken)
{
    if (status == 0) {
        done(r, 0, "", 0, 7 /* CURLE_COULDNT_CONNECT */);
        return;
    }
    if (!r->on_line || status < 200 || status >= 300) {
        done(r, status, body, len, broken ? 56 /* CURLE_RECV_ERROR */ : 0);
        return;
    }
    /* A 2xx stream: lines without '\n' (and '\r'), empty lines skipped, as http.c does. */
    struct http_client *c = r->c;
    size_t start = 0;
    while (start < len) {
        const char *nl = memchr(body + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - body) : len;
        size_t next = nl ? end + 1 : len;
        if (end > start && body[end - 1] == '\r')
            end--;
        if (end > start) {
            char *line = malloc(end - start + 1);
            if (!line)
                abort();
            memcpy(line, body + start, end - start);
            line[end - start] = '\0';
            if (tracing)
                printf("http: line %s <- %s\n", r->what, line);
            c->depth++;
            r->on_line(r, line, end - start, r->arg);
            c->depth--;
            free(line);
            if (r->cancelled) {
                settle(c);
                return;
            }
        }
        start = next;
    }
    if (!keep_open)
        done(r, status, "", 0, broken ? 56 : 0);
}
