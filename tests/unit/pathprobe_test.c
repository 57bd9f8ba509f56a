/*
 * pathprobe_test: the data-path probe client (controller/pathprobe.h) against a loopback server
 * that plays holdfast, a pod, or a broken peer: the request it sends, how each answer or
 * failure is judged, that it reads no body, ignores proxy settings, and that a cancelled probe
 * calls nothing. (tests/integration/test_datapath_probe.py sends it to holdfast itself.)
 */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "controller/kube/http.h"
#include "controller/pathprobe.h"

#define NONCE "t3st-Nonce_42"

enum serve_mode {
    ANSWER_CLOSE,     /* read the head, write the response, close */
    ANSWER_KEEP_OPEN, /* read the head, write the response, wait for the client to close */
    CLOSE_SILENT,     /* read the head, close without a byte */
    RESET,            /* read the head, close with a reset */
    NEVER_ACCEPT,     /* listen, never accept: the connect succeeds, no answer ever comes */
};

struct server {
    int fd;
    unsigned port;
    enum serve_mode mode;
    const char *response;
    char request[4096]; /* the head the probe sent */
    pthread_t thread;
    bool threaded;
};

static void *serve_one(void *arg)
{
    struct server *s = arg;
    int c = accept(s->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    size_t have = 0;
    while (have < sizeof(s->request) - 1) {
        ssize_t n = recv(c, s->request + have, sizeof(s->request) - 1 - have, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        s->request[have] = '\0';
        if (strstr(s->request, "\r\n\r\n"))
            break;
    }
    if (s->mode == RESET) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(c);
        return NULL;
    }
    if (s->mode != CLOSE_SILENT)
        send(c, s->response, strlen(s->response), MSG_NOSIGNAL);
    if (s->mode == ANSWER_CLOSE || s->mode == CLOSE_SILENT)
        shutdown(c, SHUT_WR);
    char buf[512];
    while (recv(c, buf, sizeof(buf), 0) > 0) /* until the probe closes its end */
        ;
    close(c);
    return NULL;
}

static void server_start(struct server *s, enum serve_mode mode, const char *response)
{
    memset(s, 0, sizeof(*s));
    s->mode = mode;
    s->response = response;
    s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    cr_assert_eq(bind(s->fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(s->fd, 4), 0);
    cr_assert_eq(getsockname(s->fd, (struct sockaddr *)&sin, &len), 0);
    s->port = ntohs(sin.sin_port);
    if (mode != NEVER_ACCEPT) {
        cr_assert_eq(pthread_create(&s->thread, NULL, serve_one, s), 0);
        s->threaded = true;
    }
}

static void server_stop(struct server *s)
{
    if (s->threaded)
        pthread_join(s->thread, NULL);
    close(s->fd);
}

struct outcome {
    struct event_base *base;
    int calls;
    enum pathprobe_result result;
    long status;
    char detail[512];
};

static void on_done(const struct pathprobe_answer *a, void *arg)
{
    struct outcome *o = arg;
    o->calls++;
    o->result = a->result;
    o->status = a->status;
    snprintf(o->detail, sizeof(o->detail), "%s", a->detail);
    event_base_loopbreak(o->base);
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    event_base_loopbreak(arg);
}

/* Probes 127.0.0.1:port once with NONCE and runs the loop until the answer (or 10 s). */
static void probe(unsigned port, long timeout_ms, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    o->base = event_base_new();
    struct http_client *http = http_client_new(o->base);
    cr_assert_not_null(http);
    struct event *guard = evtimer_new(o->base, on_guard, o->base);
    struct timeval ten = {10, 0};
    evtimer_add(guard, &ten);
    cr_assert_not_null(pathprobe_send(http, "127.0.0.1", port, NONCE, timeout_ms, on_done, o));
    cr_assert_eq(o->calls, 0, "never called from inside pathprobe_send");
    event_base_dispatch(o->base);
    event_base_loop(o->base, EVLOOP_NONBLOCK);
    cr_assert_eq(o->calls, 1, "done is called exactly once");
    cr_assert_eq(http_client_active(http), 0);
    event_free(guard);
    http_client_free(http);
    event_base_free(o->base);
}

static void probe_server(enum serve_mode mode, const char *response, struct outcome *o,
                         struct server *s)
{
    server_start(s, mode, response);
    probe(s->port, 60000, o); /* past the 10 s guard: no answer in time fails the test */
    server_stop(s);
}

static const char holdfast_answer[] = "HTTP/1.1 204 No Content\r\n"
                                      "Content-Type: application/json; charset=utf-8\r\n"
                                      "Content-Length: 0\r\n"
                                      "Connection: close\r\n"
                                      "Holdfast-Probe: " NONCE "\r\n\r\n";

Test(pathprobe, holdfasts_answer_with_the_nonce_echoed_is_holdfast)
{
    struct server s;
    struct outcome o;
    probe_server(ANSWER_CLOSE, holdfast_answer, &o, &s);
    cr_assert_eq(o.result, PATHPROBE_HOLDFAST, "%s", o.detail);
    cr_assert_eq(o.status, 204);
    cr_assert_str_eq(pathprobe_result_name(o.result), "Holdfast");
}

Test(pathprobe, the_request_is_get_slash_with_host_port_the_nonce_and_connection_close)
{
    struct server s;
    struct outcome o;
    probe_server(ANSWER_CLOSE, holdfast_answer, &o, &s);
    char host[64];
    snprintf(host, sizeof(host), "\r\nHost: 127.0.0.1:%u\r\n", s.port);
    cr_assert(strncmp(s.request, "GET / HTTP/1.1\r\n", 16) == 0, "%s", s.request);
    cr_assert_not_null(strstr(s.request, host), "the port is named even when it is 80: %s",
                       s.request);
    cr_assert_not_null(strstr(s.request, "\r\nHoldfast-Probe: " NONCE "\r\n"), "%s", s.request);
    cr_assert_not_null(strstr(s.request, "\r\nConnection: close\r\n"), "%s", s.request);
    cr_assert_not_null(strstr(s.request, "\r\nUser-Agent: holdfast-pathprobe/"), "%s", s.request);
    cr_assert_null(strstr(s.request, "Accept"), "nothing the probe does not need: %s", s.request);
    cr_assert_null(strstr(s.request, "Expect"), "%s", s.request);
}

Test(pathprobe, a_pods_answer_without_the_field_is_another_answer)
{
    struct server s;
    struct outcome o;
    probe_server(ANSWER_CLOSE, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", &o, &s);
    cr_assert_eq(o.result, PATHPROBE_OTHER, "%s", o.detail);
    cr_assert_eq(o.status, 200);
    cr_assert_not_null(strstr(o.detail, "HTTP 200 without a Holdfast-Probe field"), "%s", o.detail);
    cr_assert_str_eq(pathprobe_result_name(o.result), "OtherAnswer");
}

Test(pathprobe, a_204_without_the_field_is_another_answer)
{
    struct server s;
    struct outcome o;
    probe_server(ANSWER_CLOSE, "HTTP/1.1 204 No Content\r\n\r\n", &o, &s);
    cr_assert_eq(o.result, PATHPROBE_OTHER, "%s", o.detail);
    cr_assert_eq(o.status, 204);
}

Test(pathprobe, another_nonce_is_another_answer_and_is_named)
{
    struct server s;
    struct outcome o;
    probe_server(ANSWER_CLOSE, "HTTP/1.1 204 No Content\r\nHoldfast-Probe: older\r\n\r\n", &o, &s);
    cr_assert_eq(o.result, PATHPROBE_OTHER, "%s", o.detail);
    cr_assert_not_null(strstr(o.detail, "\"older\", not this probe's nonce"), "%s", o.detail);
}

Test(pathprobe, an_invalid_echo_is_not_copied_into_the_detail)
{
    struct server s;
    struct outcome o;
    probe_server(ANSWER_CLOSE, "HTTP/1.1 204 No Content\r\nHoldfast-Probe: <b>x</b>\r\n\r\n", &o,
                 &s);
    cr_assert_eq(o.result, PATHPROBE_OTHER, "%s", o.detail);
    cr_assert_null(strstr(o.detail, "<b>"), "%s", o.detail);
    cr_assert_not_null(strstr(o.detail, "invalid Holdfast-Probe value"), "%s", o.detail);
}

Test(pathprobe, the_nonce_echoed_with_another_status_or_twice_is_another_answer)
{
    struct server s;
    struct outcome o;
    probe_server(ANSWER_CLOSE,
                 "HTTP/1.1 200 OK\r\nHoldfast-Probe: " NONCE "\r\nContent-Length: 0\r\n\r\n", &o,
                 &s);
    cr_assert_eq(o.result, PATHPROBE_OTHER, "%s", o.detail);
    cr_assert_not_null(strstr(o.detail, "where holdfast answers 204"), "%s", o.detail);
    probe_server(ANSWER_CLOSE,
                 "HTTP/1.1 204 No Content\r\nHoldfast-Probe: " NONCE "\r\nHoldfast-Probe: " NONCE
                 "\r\n\r\n",
                 &o, &s);
    cr_assert_eq(o.result, PATHPROBE_OTHER, "%s", o.detail);
    cr_assert_not_null(strstr(o.detail, "2 Holdfast-Probe fields"), "%s", o.detail);
}

Test(pathprobe, an_interim_100_is_skipped_and_the_final_answer_judged)
{
    struct server s;
    struct outcome o;
    probe_server(ANSWER_CLOSE,
                 "HTTP/1.1 100 Continue\r\nHoldfast-Probe: " NONCE "\r\n\r\n"
                 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                 &o, &s);
    cr_assert_eq(o.result, PATHPROBE_OTHER, "%s", o.detail);
    cr_assert_eq(o.status, 200);
}

Test(pathprobe, the_body_is_not_read_an_endless_one_is_judged_at_its_head)
{
    /* A pod whose "GET /" streams forever: the probe must not wait for its deadline (60 s,
     * past the 10 s guard of probe()). */
    struct server s;
    struct outcome o;
    probe_server(ANSWER_KEEP_OPEN,
                 "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                 &o, &s);
    cr_assert_eq(o.result, PATHPROBE_OTHER, "%s", o.detail);
    cr_assert_eq(o.status, 200);
}

Test(pathprobe, a_close_without_an_answer_is_reset)
{
    struct server s;
    struct outcome o;
    probe_server(CLOSE_SILENT, "", &o, &s);
    cr_assert_eq(o.result, PATHPROBE_RESET, "%s", o.detail);
    cr_assert_eq(o.status, 0);
    cr_assert_not_null(strstr(o.detail, "closed the connection without answering"), "%s", o.detail);
}

Test(pathprobe, a_reset_is_reset)
{
    struct server s;
    struct outcome o;
    probe_server(RESET, "", &o, &s);
    cr_assert_eq(o.result, PATHPROBE_RESET, "%s", o.detail);
    cr_assert_str_eq(pathprobe_result_name(o.result), "Reset");
}

Test(pathprobe, a_refused_connect_is_refused)
{
    /* A port bound and not listening refuses, and nobody else can take it meanwhile. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    struct outcome o;
    probe(ntohs(sin.sin_port), 5000, &o);
    close(fd);
    cr_assert_eq(o.result, PATHPROBE_REFUSED, "%s", o.detail);
    cr_assert_not_null(strstr(o.detail, "refused"), "%s", o.detail);
}

Test(pathprobe, no_answer_within_the_deadline_is_a_timeout)
{
    struct server s;
    server_start(&s, NEVER_ACCEPT, "");
    struct outcome o;
    probe(s.port, 300, &o);
    server_stop(&s);
    cr_assert_eq(o.result, PATHPROBE_TIMEOUT, "%s", o.detail);
    cr_assert_not_null(strstr(o.detail, "within 300 ms"), "%s", o.detail);
}

Test(pathprobe, proxy_settings_of_the_environment_are_ignored)
{
    /* A proxy that refuses: if the probe went there, it would be Refused, not Holdfast. */
    setenv("http_proxy", "http://127.0.0.1:9", 1);
    setenv("HTTP_PROXY", "http://127.0.0.1:9", 1);
    setenv("ALL_PROXY", "http://127.0.0.1:9", 1);
    setenv("all_proxy", "http://127.0.0.1:9", 1);
    struct server s;
    struct outcome o;
    probe_server(ANSWER_CLOSE, holdfast_answer, &o, &s);
    cr_assert_eq(o.result, PATHPROBE_HOLDFAST, "%s", o.detail);
}

Test(pathprobe, invalid_arguments_start_nothing)
{
    struct event_base *base = event_base_new();
    struct http_client *http = http_client_new(base);
    struct outcome o = {.base = base};
    cr_assert_null(pathprobe_send(http, "127.0.0.1", 80, "", 1000, on_done, &o));
    cr_assert_null(pathprobe_send(http, "127.0.0.1", 80, "a b", 1000, on_done, &o));
    cr_assert_null(pathprobe_send(http, "localhost", 80, NONCE, 1000, on_done, &o),
                   "an address, never a name to resolve");
    cr_assert_null(pathprobe_send(http, "10.0.0.300", 80, NONCE, 1000, on_done, &o));
    cr_assert_null(pathprobe_send(http, "127.0.0.1", 0, NONCE, 1000, on_done, &o));
    cr_assert_null(pathprobe_send(http, "127.0.0.1", 65536, NONCE, 1000, on_done, &o));
    cr_assert_null(pathprobe_send(http, "127.0.0.1", 80, NONCE, 1000, NULL, &o));
    cr_assert_eq(http_client_active(http), 0);
    event_base_loop(base, EVLOOP_NONBLOCK);
    cr_assert_eq(o.calls, 0);
    http_client_free(http);
    event_base_free(base);
}

Test(pathprobe, an_ipv6_address_is_bracketed_in_the_url_and_host)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)) < 0)
        cr_skip_test("no IPv6 loopback here");
    close(fd);
    /* Nobody listens there: refused, and the message names the address as written. */
    socklen_t len = sizeof(sin6);
    fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin6, sizeof(sin6)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin6, &len), 0);
    unsigned port = ntohs(sin6.sin6_port);
    struct outcome o = {.base = event_base_new()};
    struct http_client *http = http_client_new(o.base);
    cr_assert_not_null(pathprobe_send(http, "::1", port, NONCE, 2000, on_done, &o));
    event_base_dispatch(o.base);
    close(fd);
    char want[64];
    snprintf(want, sizeof(want), "[::1]:%u", port);
    cr_assert_eq(o.result, PATHPROBE_REFUSED, "%s", o.detail);
    cr_assert_not_null(strstr(o.detail, want), "%s", o.detail);
    http_client_free(http);
    event_base_free(o.base);
}

Test(pathprobe, a_cancelled_probe_calls_nothing)
{
    struct server s;
    server_start(&s, NEVER_ACCEPT, "");
    struct outcome o = {.base = event_base_new()};
    struct http_client *http = http_client_new(o.base);
    struct pathprobe *p = pathprobe_send(http, "127.0.0.1", s.port, NONCE, 200, on_done, &o);
    cr_assert_not_null(p);
    event_base_loop(o.base, EVLOOP_NONBLOCK); /* under way */
    pathprobe_cancel(p);
    cr_assert_eq(http_client_active(http), 0);
    struct timeval later = {0, 400000}; /* past the probe's deadline */
    event_base_loopexit(o.base, &later);
    event_base_dispatch(o.base);
    cr_assert_eq(o.calls, 0);
    http_client_free(http);
    event_base_free(o.base);
    server_stop(&s);
}
