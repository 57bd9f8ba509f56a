/*
 * admin: /metrics, /healthz, /readyz with libevent's evhttp. See admin.h.
 */
#include "process/admin.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "resolver/dataplane.h"

#define ADMIN_MAX_PRODUCERS 8

/* While accepting fails (out of descriptors), the listener is paused and tried again this often. */
#define ADMIN_ACCEPT_RETRY_US 100000

/*
 * Bounds of one request. evhttp reads without limit unless told: one header line that never
 * ends was read for as long as it came (tens of MB, rescanned for its end on every read). Past
 * the head cap the answer is 400, past the body cap 413, and the connection is closed. Scrapers
 * and probes send a few hundred bytes of head (a bearer token a few KiB) and no body.
 */
#define ADMIN_MAX_HEAD_BYTES 8192
#define ADMIN_MAX_BODY_BYTES 1024

/*
 * evhttp's timeout is per read and per write (a bufferevent timeout), not per request: it ends
 * an idle connection or a stalled one, while a client that keeps trickling is ended by the head
 * cap above. Concurrent connections are not capped: libevent 2.1's evhttp has no such limit,
 * and nothing of it sees a connection close before a first request is read, so there is
 * nothing to count them with.
 */
#define ADMIN_IO_TIMEOUT_S 10

struct admin {
    struct evhttp *http;
    struct evconnlistener *listener; /* evhttp's listener; owned by http */
    struct event *accept_retry;      /* re-enables the listener after a failed accept */
    bool fd_exhausted;               /* in an out-of-descriptors episode, until an accept works */
    uint64_t fd_exhausted_total;     /* episodes; read and written on the control thread only */
    struct addr addr;                /* where it listens, for the log */
    struct admin *next;              /* in `admins` */
    struct dataplane *dp;
    admin_metrics_fn fns[ADMIN_MAX_PRODUCERS];
    void *args[ADMIN_MAX_PRODUCERS];
    size_t n_fns;
    admin_ready_fn ready_fn;   /* the control plane's own readiness, or NULL */
    admin_health_fn health_fn; /* the control plane's liveness, or NULL */
    void *health_arg;
    void *ready_arg;
};

/* The whole exposition: the data plane's families, then each module's. */
static void admin_render_metrics(struct admin *a, struct mtext *out)
{
    dataplane_metrics(out, a->dp, a->fd_exhausted_total);
    for (size_t i = 0; i < a->n_fns; i++)
        a->fns[i](out, a->args[i]);
}

static void reply_text(struct evhttp_request *req, int code, const char *reason,
                       const char *content_type, const char *body, size_t len)
{
    struct evbuffer *buf = evbuffer_new();
    if (!buf) {
        evhttp_send_error(req, 500, NULL);
        return;
    }
    evbuffer_add(buf, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
    evhttp_send_reply(req, code, reason, buf);
    evbuffer_free(buf);
}

static void on_request(struct evhttp_request *req, void *arg)
{
    struct admin *a = arg;
    const char *uri = evhttp_request_get_uri(req);
    struct evhttp_uri *parsed = evhttp_uri_parse(uri);
    const char *path = parsed ? evhttp_uri_get_path(parsed) : NULL;
    if (!path)
        path = "";
    if (strcmp(path, "/metrics") == 0) {
        struct mtext t;
        mtext_init(&t);
        admin_render_metrics(a, &t);
        reply_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", t.data, t.len);
        mtext_free(&t);
    } else if (strcmp(path, "/healthz") == 0) {
        char why[600] = "";
        if (!a->health_fn || a->health_fn(a->health_arg, why, sizeof(why) - 1)) {
            reply_text(req, 200, "OK", "text/plain; charset=utf-8", "ok\n", 3);
        } else {
            strcat(why, "\n");
            reply_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8", why,
                       strlen(why));
        }
    } else if (strcmp(path, "/readyz") == 0) {
        if (dataplane_ready(a->dp) && (!a->ready_fn || a->ready_fn(a->ready_arg)))
            reply_text(req, 200, "OK", "text/plain; charset=utf-8", "ready\n", 6);
        else
            reply_text(req, 503, "Service Unavailable", "text/plain; charset=utf-8", "not ready\n",
                       10);
    } else {
        reply_text(req, 404, "Not Found", "text/plain; charset=utf-8", "not found\n", 10);
    }
    if (parsed)
        evhttp_uri_free(parsed);
}

/* ---- accepting ---- */

/*
 * libevent calls a listener's error callback with the callback argument evhttp gave the
 * listener, its own struct evhttp, so the admin it belongs to is looked up here. Only the
 * control thread touches it (admin_start, admin_free and the callbacks run on its loop).
 */
static struct admin *admins;

static struct admin *admin_of_http(const void *http)
{
    for (struct admin *a = admins; a; a = a->next) {
        if (a->http == http)
            return a;
    }
    return NULL;
}

/*
 * accept() failed (libevent handles EINTR, EAGAIN and ECONNABORTED without calling this). The
 * listener stays readable while connections wait in the backlog, so libevent would call
 * accept() again at once, in a loop on the control thread: pause it, and look again shortly.
 * Running out of descriptors is counted and logged once per episode, until an accept works again.
 */
static void on_accept_error(struct evconnlistener *listener, void *arg)
{
    int err = EVUTIL_SOCKET_ERROR();
    struct admin *a = admin_of_http(arg);
    if (!a)
        return;
    evconnlistener_disable(listener);
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        if (!a->fd_exhausted) {
            a->fd_exhausted = true;
            a->fd_exhausted_total++;
            log_warn("out of file descriptors: admin listener paused, retried every 100 ms",
                     "listener=%s error=%s", a->addr.text, strerror(err));
        }
    } else {
        log_warn("admin accept failed; retried in 100 ms", "listener=%s error=%s", a->addr.text,
                 strerror(err));
    }
    struct timeval tv = {0, ADMIN_ACCEPT_RETRY_US};
    event_add(a->accept_retry, &tv);
}

static void on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    struct admin *a = arg;
    evconnlistener_enable(a->listener);
}

/*
 * evhttp asks for each accepted connection's bufferevent here: the one place that learns an
 * accept worked. It gets what evhttp makes without this callback (options 0: evhttp closes
 * the socket itself).
 */
static struct bufferevent *on_accepted(struct event_base *base, void *arg)
{
    struct admin *a = arg;
    if (a->fd_exhausted) {
        a->fd_exhausted = false;
        log_info("admin listener accepting again after running out of file descriptors",
                 "listener=%s", a->addr.text);
    }
    return bufferevent_socket_new(base, -1, 0);
}

struct admin *admin_start(struct event_base *base, const struct addr *addr, struct dataplane *dp,
                          char *err, size_t errlen)
{
    struct admin *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    a->dp = dp;
    a->addr = *addr;
    a->http = evhttp_new(base);
    a->accept_retry = evtimer_new(base, on_accept_retry, a);
    if (!a->http || !a->accept_retry) {
        snprintf(err, errlen, "cannot create the admin HTTP server");
        admin_free(a);
        return NULL;
    }
    int fd = listener_socket(addr, false, err, errlen);
    if (fd < 0)
        goto fail;
    struct evhttp_bound_socket *bound = evhttp_accept_socket_with_handle(a->http, fd);
    if (!bound) {
        close(fd);
        snprintf(err, errlen, "%s: cannot serve the admin endpoint", addr->text);
        goto fail;
    }
    a->listener = evhttp_bound_socket_get_listener(bound);
    evconnlistener_set_error_cb(a->listener, on_accept_error);
    evhttp_set_bevcb(a->http, on_accepted, a);
    evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(a->http, on_request, a);
    evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEAD_BYTES);
    evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY_BYTES);
    evhttp_set_timeout(a->http, ADMIN_IO_TIMEOUT_S);
    a->next = admins;
    admins = a;
    return a;

fail:
    admin_free(a);
    return NULL;
}

void admin_add_metrics(struct admin *a, admin_metrics_fn fn, void *arg)
{
    if (a->n_fns < ADMIN_MAX_PRODUCERS) {
        a->fns[a->n_fns] = fn;
        a->args[a->n_fns] = arg;
        a->n_fns++;
    }
}

void admin_set_health_check(struct admin *a, admin_health_fn fn, void *arg)
{
    a->health_fn = fn;
    a->health_arg = arg;
}

void admin_set_ready_check(struct admin *a, admin_ready_fn fn, void *arg)
{
    a->ready_fn = fn;
    a->ready_arg = arg;
}

void admin_free(struct admin *a)
{
    if (!a)
        return;
    for (struct admin **p = &admins; *p; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            break;
        }
    }
    if (a->accept_retry)
        event_free(a->accept_retry);
    if (a->http)
        evhttp_free(a->http);
    free(a);
}
