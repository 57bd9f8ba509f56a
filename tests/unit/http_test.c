/*
 * http_test: the HTTP client's streaming contract (controller/http.h) against a loopback server
 * that answers one request with fixed bytes and closes: every line of a 2xx stream reaches
 * on_line, the last one even without its newline, and a request cancelled from on_line gets
 * no further callback (found by tests/fuzz kube_http: cancelling from the last line's on_line
 * freed the request under http.c's feet).
 */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "controller/http.h"

struct server {
    int fd;
    unsigned port;
    const char *response;
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
    shutdown(c, SHUT_WR);
    while (recv(c, buf, sizeof(buf), 0) > 0)
        ;
    close(c);
    return NULL;
}

static void server_start(struct server *s, const char *response)
{
    s->response = response;
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
