/*
 * http_test: the HTTP client's streaming contract (controller/http.h) against a loopback server
 * that answers one request with fixed bytes and closes: every line of a 2xx stream reaches
 * on_line, the last one even without its newline, and a request cancelled from on_line gets
 * no further callback (found by tests/fuzz kube_http: cancelling from the last line's on_line
 * freed the request under http.c's feet). And the options of one-shot requests (the data-path
 * probe's): headers_only ends at the response head, header fields are read back by name.
 */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "controller/kube/http.h"

struct server {
    int fd;
    unsigned port;
    const char *response;
    bool keep_open; /* after the response, wait for the client to close (an endless body) */
    pthread_t thread;
};

/* Accepts one connection, reads the request head, writes the response, closes. */
static void *serve_one(void *arg)
{
    struct server *s = arg;
    int c = accept(s->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[4096];
    size_t have = 0;
    while (have < sizeof(buf) - 1) {
        ssize_t n = recv(c, buf + have, sizeof(buf) - 1 - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    send(c, s->response, strlen(s->response), MSG_NOSIGNAL);
    if (!s->keep_open)
        shutdown(c, SHUT_WR);
    while (recv(c, buf, sizeof(buf), 0) > 0)
        ;
    close(c);
    return NULL;
}

static void server_start(struct server *s, const char *response)
{
    s->response = response;
    s->keep_open = false;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    cr_assert_eq(bind(s->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(s->fd, 4), 0);
    cr_assert_eq(getsockname(s->fd, (struct sockaddr *)&sin, &len), 0);
    s->port = ntohs(sin.sin_port);
    cr_assert_eq(pthread_create(&s->thread, NULL, serve_one, s), 0);
}

static void server_stop(struct server *s)
{
    pthread_join(s->thread, NULL);
    close(s->fd);
}

struct stream {
    struct event_base *base;
    char lines[4][64];
    int n_lines;
    int cancel_at; /* cancel from the on_line of this line (1-based), 0: never */
    int dones;
    long status;
    bool cancelled;
};

static void on_line(struct http_request *req, const char *line, size_t len, void *arg)
{
    struct stream *st = arg;
    cr_assert_eq(st->dones, 0, "a line after the request ended");
    if (st->n_lines < 4)
        snprintf(st->lines[st->n_lines], sizeof(st->lines[0]), "%.*s", (int)len, line);
    if (++st->n_lines == st->cancel_at) {
        http_request_cancel(req);
        st->cancelled = true;
        event_base_loopbreak(st->base);
    }
}

static void on_done(struct http_request *req, const struct http_response *resp, void *arg)
{
    struct stream *st = arg;
    st->dones++;
    st->status = resp->status;
    event_base_loopbreak(st->base);
}

/* Streams `response` from a loopback server; cancels at line cancel_at (0: never). */
static void run_stream(const char *response, int cancel_at, struct stream *st)
{
    struct server s;
    server_start(&s, response);
    memset(st, 0, sizeof(*st));
    st->base = event_base_new();
    st->cancel_at = cancel_at;
    struct http_client *c = http_client_new(st->base);
    cr_assert_not_null(c);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/watch", s.port);
    struct http_request_opts o = {
        .method = "GET",
        .url = url,
        .timeout_ms = 5000,
        .on_line = on_line,
        .on_done = on_done,
        .arg = st,
    };
    cr_assert_not_null(http_request_start(c, &o));
    event_base_dispatch(st->base);
    /* Anything still due (a deferred cancel, a stray callback) runs now. */
    event_base_loop(st->base, EVLOOP_NONBLOCK);
    cr_assert_eq(http_client_active(c), 0, "the request is freed");
    http_client_free(c);
    event_base_free(st->base);
    server_stop(&s);
}

/* HTTP/1.0 without Content-Length: the body ends with the connection, the last line with no
 * '\n' (a watch cut short by a proxy looks like this, and curl reports success). */
static const char cut_stream[] = "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n"
                                 "{\"type\":\"ADDED\"}\r\n"
                                 "{\"type\":\"ERROR\"}";

Test(http, stream_lines_reach_on_line_including_a_last_line_without_newline)
{
    struct stream st;
    run_stream(cut_stream, 0, &st);
    cr_assert_eq(st.n_lines, 2);
    cr_assert_str_eq(st.lines[0], "{\"type\":\"ADDED\"}", "'\\r\\n' is cut off");
    cr_assert_str_eq(st.lines[1], "{\"type\":\"ERROR\"}");
    cr_assert_eq(st.dones, 1);
    cr_assert_eq(st.status, 200);
}

Test(http, cancel_from_the_last_lines_on_line_ends_the_request_quietly)
{
    struct stream st;
    run_stream(cut_stream, 2, &st);
    cr_assert(st.cancelled);
    cr_assert_eq(st.n_lines, 2);
    cr_assert_eq(st.dones, 0, "no on_done after a cancel");
}

Test(http, cancel_from_an_earlier_line_stops_the_stream)
{
    struct stream st;
    run_stream(cut_stream, 1, &st);
    cr_assert(st.cancelled);
    cr_assert_eq(st.n_lines, 1, "no line after the cancel");
    cr_assert_eq(st.dones, 0);
}

struct plain {
    struct event_base *base;
    int dones;
    long status;
    int curl_code;
    size_t body_len;
    const char *only;   /* http_response_header(X-Only) */
    char last[32];      /* http_response_header(X-Twice) */
    size_t twice, none; /* counts of X-Twice and X-None */
};

static void on_plain_done(struct http_request *req, const struct http_response *resp, void *arg)
{
    struct plain *p = arg;
    p->dones++;
    p->status = resp->status;
    p->curl_code = resp->curl_code;
    p->body_len = resp->body_len;
    const char *v = http_response_header(req, "x-twice", &p->twice);
    snprintf(p->last, sizeof(p->last), "%s", v ? v : "(none)");
    p->only = http_response_header(req, "X-Only", NULL) ? "yes" : "no";
    cr_assert_null(http_response_header(req, "X-None", &p->none));
    event_base_loopbreak(p->base);
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* A plain GET with headers_only to a server that writes `response` (and keeps the connection
 * open when keep_open); runs until on_done or a 10 s guard. */
static void run_headers_only(const char *response, bool keep_open, struct plain *p)
{
    struct server s;
    server_start(&s, response);
    s.keep_open = keep_open;
    memset(p, 0, sizeof(*p));
    p->base = event_base_new();
    struct http_client *c = http_client_new(p->base);
    struct event *guard = evtimer_new(p->base, on_guard, p->base);
    struct timeval ten = {10, 0};
    evtimer_add(guard, &ten);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/", s.port);
    struct http_request_opts o = {
        .method = "GET",
        .url = url,
        .timeout_ms = 60000,
        .no_proxy = true,
        .fresh_connection = true,
        .headers_only = true,
        .on_done = on_plain_done,
        .arg = p,
    };
    cr_assert_not_null(http_request_start(c, &o));
    event_base_dispatch(p->base);
    event_free(guard);
    cr_assert_eq(http_client_active(c), 0, "the request is freed");
    http_client_free(c); /* closes the connection: the server's thread ends */
    event_base_free(p->base);
    server_stop(&s);
}

Test(http, headers_only_completes_at_the_head_of_an_endless_body)
{
    struct plain p;
    run_headers_only("HTTP/1.1 200 OK\r\nX-Only: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhello\r\n",
                     true, &p);
    cr_assert_eq(p.dones, 1, "answered before the 10 s guard, not at the 60 s deadline");
    cr_assert_eq(p.status, 200);
    cr_assert_eq(p.curl_code, 0, "stopping at the head is a completion");
    cr_assert_eq(p.body_len, 0);
    cr_assert_str_eq(p.only, "yes");
}

Test(http, response_header_gives_the_last_field_and_the_count)
{
    struct plain p;
    run_headers_only("HTTP/1.1 204 No Content\r\nX-Twice: first\r\nx-twice: second\r\n\r\n", false,
                     &p);
    cr_assert_eq(p.dones, 1);
    cr_assert_eq(p.status, 204);
    cr_assert_eq(p.twice, 2);
    cr_assert_str_eq(p.last, "second");
    cr_assert_eq(p.none, 0);
    cr_assert_str_eq(p.only, "no");
}
