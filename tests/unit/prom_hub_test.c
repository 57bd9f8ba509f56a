/*
 * prom_hub: the controller's Prometheus queries, shared and paced (issue 13). One query per
 * distinct (server, headers, query text) however many ask, its answer (or its error) handed
 * to every asker; a fresh answer is shared, a stale one is not; at most max_inflight queries
 * in flight per server, the rest sent as slots free up.
 *
 * Over the scripted HTTP stand-in of tests/fuzz (fake_http.h): requests are counted and
 * answered by the test, nothing goes on the network.
 */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "controller/kube/http.h"
#include "controller/prom.h"
#include "tests/fuzz/fake_http.h"

static struct event_base *base;
static struct http_client *http;
static int dropped;

struct answer {
    int calls;
    enum prom_status st;
    double value;
    char reason[512];
};

static void on_done(enum prom_status st, double value, const char *reason, void *arg)
{
    struct answer *a = arg;
    a->calls++;
    a->st = st;
    a->value = value;
    snprintf(a->reason, sizeof(a->reason), "%s", reason);
}

static void on_drop(void *arg)
{
    (void)arg;
    dropped++;
}

static void setup(void)
{
    base = event_base_new();
    http = http_client_new(base);
    cr_assert(base && http);
    dropped = 0;
}

static void teardown(void)
{
    http_client_free(http);
    event_base_free(base);
}

TestSuite(prom_hub, .init = setup, .fini = teardown);

static struct prom_trigger trig(const char *server, const char *header)
{
    struct prom_trigger t = {0};
    t.server_address = strdup(server);
    t.query = strdup("q");
    t.uptime_filter = strdup(PROM_DEFAULT_UPTIME_FILTER);
    t.headers = calloc(2, sizeof(*t.headers));
    if (header)
        t.headers[0] = strdup(header);
    return t;
}

static void run(void)
{
    event_base_loop(base, EVLOOP_NONBLOCK);
}

static const char *vec(double v, char *buf, size_t len)
{
    snprintf(buf, len,
             "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"metric\":"
             "{},\"value\":[1700000000,\"%g\"]}]}}",
             v);
    return buf;
}

/* Answers the pending request whose URL holds `needle` with value v. */
static void answer_value(const char *needle, double v)
{
    char body[256];
    struct http_request *r = fake_http_pick(needle, strlen(needle));
    cr_assert(r && strstr(fake_http_what(r), needle), "no pending request for %s", needle);
    vec(v, body, sizeof(body));
    fake_http_answer(r, 200, body, strlen(body), false, false);
}

Test(prom_hub, many_asks_for_one_query_send_one_and_all_get_its_answer)
{
    struct prom_hub *h = prom_hub_new(base, http, 8, 30000, on_drop);
    struct prom_trigger t = trig("http://prom:9090", NULL);
    struct answer a[50] = {0};
    for (int i = 0; i < 50; i++)
        cr_assert(prom_hub_ask(h, &t, "sum(up)", 0, on_done, &a[i]));
    cr_assert_eq(fake_http_pending(), 1, "50 asks for one query: %zu requests",
                 fake_http_pending());
    cr_assert_eq(a[0].calls, 0, "not answered from inside the ask");
    answer_value("query=sum%28up%29", 0.25);
    run();
    for (int i = 0; i < 50; i++) {
        cr_assert_eq(a[i].calls, 1, "ask %d answered %d times", i, a[i].calls);
        cr_assert_eq(a[i].st, PROM_OK);
        cr_assert_float_eq(a[i].value, 0.25, 1e-9);
        cr_assert_str_eq(a[i].reason, "");
    }
    struct prom_hub_stats s;
    prom_hub_stats(h, &s);
    cr_assert_eq(s.sent, 1);
    cr_assert_eq(s.shared, 49);
    prom_hub_free(h);
    prom_trigger_clear(&t);
}

Test(prom_hub, distinct_queries_servers_and_headers_are_separate)
{
    struct prom_hub *h = prom_hub_new(base, http, 8, 30000, on_drop);
    struct prom_trigger t1 = trig("http://prom:9090", NULL);
    struct prom_trigger t2 = trig("http://other:9090", NULL);
    struct prom_trigger t3 = trig("http://prom:9090", "X-Scope-OrgID: tenant-b");
    struct answer a = {0}, b = {0}, c = {0}, d = {0};
    prom_hub_ask(h, &t1, "load_a", 0, on_done, &a);
    prom_hub_ask(h, &t1, "load_b", 0, on_done, &b);
    prom_hub_ask(h, &t2, "load_a", 0, on_done, &c);
    prom_hub_ask(h, &t3, "load_a", 0, on_done, &d);
    cr_assert_eq(fake_http_pending(), 4);
    answer_value("prom:9090/api/v1/query?query=load_b", 7);
    run();
    cr_assert_eq(b.calls, 1);
    cr_assert_float_eq(b.value, 7, 1e-9);
    cr_assert_eq(a.calls + c.calls + d.calls, 0, "only load_b's asker is answered");
    answer_value("other:9090", 1);
    answer_value("prom:9090/api/v1/query?query=load_a", 0.5);
    answer_value("prom:9090/api/v1/query?query=load_a", 3); /* the tenant-b one */
    run();
    cr_assert_float_eq(c.value, 1, 1e-9);
    cr_assert_float_eq(a.value, 0.5, 1e-9);
    cr_assert_float_eq(d.value, 3, 1e-9);
    prom_hub_free(h);
    prom_trigger_clear(&t1);
    prom_trigger_clear(&t2);
    prom_trigger_clear(&t3);
}

Test(prom_hub, a_failed_query_is_every_askers_error_with_the_reason)
{
    struct prom_hub *h = prom_hub_new(base, http, 8, 30000, on_drop);
    struct prom_trigger t = trig("http://prom:9090", NULL);
    struct answer a[3] = {0};
    for (int i = 0; i < 3; i++)
        prom_hub_ask(h, &t, "sum(up)", 0, on_done, &a[i]);
    const char *body = "{\"status\":\"error\",\"error\":\"boom\"}";
    fake_http_answer(fake_http_pick("query=", 6), 503, body, strlen(body), false, false);
    run();
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(a[i].st, PROM_HTTP_STATUS);
        cr_assert_str_eq(a[i].reason, "Prometheus answered HTTP 503: boom");
    }
    /* and a transport failure */
    struct answer b[2] = {0};
    prom_hub_ask(h, &t, "other", 0, on_done, &b[0]);
    prom_hub_ask(h, &t, "other", 0, on_done, &b[1]);
    fake_http_answer(fake_http_pick("query=other", 11), 0, "", 0, false, false);
    run();
    cr_assert_eq(b[0].st, PROM_UNREACHABLE);
    cr_assert_eq(b[1].st, PROM_UNREACHABLE);
    cr_assert_str_eq(b[0].reason, b[1].reason);
    prom_hub_free(h);
    prom_trigger_clear(&t);
}

Test(prom_hub, answers_are_shared_while_fresh_and_never_older_than_the_askers_last)
{
    struct prom_hub *h = prom_hub_new(base, http, 8, 400, on_drop);
    struct prom_trigger t = trig("http://prom:9090", NULL);
    struct answer a = {0}, b = {0}, c = {0}, d = {0};
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t before = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    prom_hub_ask(h, &t, "q1", 0, on_done, &a);
    answer_value("query=q1", 1);
    run();
    /* answered: another ask within share_ms gets it without a request */
    prom_hub_ask(h, &t, "q1", before - 1, on_done, &b);
    cr_assert_eq(fake_http_pending(), 0, "a fresh answer is shared");
    cr_assert_eq(b.calls, 0, "not answered from inside the ask");
    run();
    cr_assert_eq(b.calls, 1);
    cr_assert_float_eq(b.value, 1, 1e-9);
    /* an asker whose previous evaluation began after that query was sent gets a new one */
    prom_hub_ask(h, &t, "q1", before + 100000, on_done, &c);
    cr_assert_eq(fake_http_pending(), 1, "an answer older than the asker's last is not shared");
    answer_value("query=q1", 2);
    run();
    cr_assert_float_eq(c.value, 2, 1e-9);
    /* past share_ms, nobody gets it */
    struct timespec nap = {0, 450 * 1000000};
    nanosleep(&nap, NULL);
    prom_hub_ask(h, &t, "q1", 0, on_done, &d);
    cr_assert_eq(fake_http_pending(), 1, "a stale answer is not shared");
    answer_value("query=q1", 3);
    run();
    cr_assert_float_eq(d.value, 3, 1e-9);
    struct prom_hub_stats s;
    prom_hub_stats(h, &s);
    cr_assert_eq(s.sent, 3);
    cr_assert_eq(s.shared, 1);
    prom_hub_free(h);
    prom_trigger_clear(&t);
}

Test(prom_hub, at_most_max_inflight_queries_per_server_the_rest_follow_in_order)
{
    struct prom_hub *h = prom_hub_new(base, http, 3, 30000, on_drop);
    struct prom_trigger t = trig("http://prom:9090", NULL);
    struct prom_trigger other = trig("http://other:9090", NULL);
    struct answer a[7] = {0}, o = {0};
    char q[16];
    for (int i = 0; i < 7; i++) {
        snprintf(q, sizeof(q), "q%d", i);
        cr_assert(prom_hub_ask(h, &t, q, 0, on_done, &a[i]));
    }
    prom_hub_ask(h, &other, "q0", 0, on_done, &o);
    cr_assert_eq(fake_http_pending(), 3 + 1, "3 to prom (the cap), 1 to another server");
    struct prom_hub_stats s;
    prom_hub_stats(h, &s);
    cr_assert_eq(s.queued, 4);
    cr_assert_eq(s.inflight, 4);
    for (int i = 0; i < 7; i++) {
        snprintf(q, sizeof(q), "query=q%d&", i);
        answer_value(q, i); /* the next queued one is sent as this one ends */
        cr_assert_leq(fake_http_pending(), 3 + 1, "never more than the cap in flight");
    }
    answer_value("other:9090", 9);
    run();
    for (int i = 0; i < 7; i++)
        cr_assert_float_eq(a[i].value, i, 1e-9);
    cr_assert_float_eq(o.value, 9, 1e-9);
    prom_hub_stats(h, &s);
    cr_assert_eq(s.sent, 8);
    cr_assert_eq(s.queued + s.inflight, 0);
    prom_hub_free(h);
    prom_trigger_clear(&t);
    prom_trigger_clear(&other);
}

Test(prom_hub, freeing_drops_every_waiting_ask_without_answering_it)
{
    struct prom_hub *h = prom_hub_new(base, http, 1, 30000, on_drop);
    struct prom_trigger t = trig("http://prom:9090", NULL);
    struct answer a[4] = {0};
    prom_hub_ask(h, &t, "q1", 0, on_done, &a[0]); /* in flight */
    prom_hub_ask(h, &t, "q1", 0, on_done, &a[1]); /* waits for it */
    prom_hub_ask(h, &t, "q2", 0, on_done, &a[2]); /* queued behind the cap */
    prom_hub_free(h);
    run();
    cr_assert_eq(dropped, 3);
    cr_assert_eq(a[0].calls + a[1].calls + a[2].calls, 0);
    cr_assert_eq(fake_http_pending(), 0, "the query in flight is cancelled");
    prom_trigger_clear(&t);
}

Test(prom_hub, a_query_that_waits_too_long_for_a_slot_is_not_sent_and_its_askers_are_told)
{
    struct prom_hub *h = prom_hub_new(base, http, 1, 30000, on_drop);
    prom_hub_set_queue_max(h, 200);
    struct prom_trigger t = trig("http://prom:9090", NULL);
    struct answer held = {0}, a = {0}, b = {0};
    prom_hub_ask(h, &t, "hangs", 0, on_done, &held); /* takes the only slot, never answered */
    prom_hub_ask(h, &t, "waits", 0, on_done, &a);
    prom_hub_ask(h, &t, "waits", 0, on_done, &b);
    cr_assert_eq(fake_http_pending(), 1);
    for (int i = 0; i < 50 && !(a.calls && b.calls); i++)
        event_base_loop(base, EVLOOP_ONCE);
    cr_assert_eq(a.calls, 1);
    cr_assert_eq(b.calls, 1);
    cr_assert_eq(a.st, PROM_UNREACHABLE);
    cr_assert(strstr(a.reason, "not sent within 200 ms, while 1 queries to this server were in "
                               "flight"),
              "%s", a.reason);
    cr_assert_str_eq(a.reason, b.reason);
    cr_assert_eq(held.calls, 0);
    cr_assert_eq(fake_http_pending(), 1, "the waiting query was never sent");
    struct prom_hub_stats s;
    prom_hub_stats(h, &s);
    cr_assert_eq(s.queued, 0);
    cr_assert_eq(s.sent, 1);
    prom_hub_free(h);
    cr_assert_eq(dropped, 1, "the held one's asker, at free");
    prom_trigger_clear(&t);
}
