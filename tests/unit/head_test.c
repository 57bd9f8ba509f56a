/* head: a request head is captured as spans of its buffer; the RFC 9112 checks llhttp leaves
 * to its user refuse the message; the first-bytes looks (TLS / h2c, Holdfast-Probe) see what
 * they must and nothing past the head. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "resolver/head.h"

static struct head_parser hp;
static struct head h;

static void setup(void)
{
    head_parser_init(&hp);
    memset(&h, 0, sizeof(h));
    hp.head = &h;
    hp.capture = true;
}

TestSuite(head, .init = setup);

/* Feeds the whole of msg; returns llhttp's result. */
static llhttp_errno_t feed(const char *msg)
{
    return head_execute(&hp, msg, msg, 0, strlen(msg));
}

Test(head, a_complete_head_pauses_with_its_fields_captured)
{
    const char *m = "GET /ready?x=1 HTTP/1.1\r\nHost: a.b\r\nX-Empty:\r\nUser-Agent: kube\r\n\r\n";
    cr_assert_eq(feed(m), HPE_PAUSED);
    cr_assert_eq(hp.pause, HEAD_PAUSE_HEAD_DONE);
    cr_assert(head_span_eq(m, h.method, "get"));
    cr_assert(head_span_eq(m, h.url, "/ready?x=1"));
    cr_assert_eq(h.n_fields, 3);
    struct head_span v = {0, 0};
    cr_assert_eq(head_find(&h, m, "user-agent", &v), 1); /* not run into X-Empty's name */
    cr_assert(head_span_eq(m, v, "kube"));
    cr_assert_eq(head_find(&h, m, "x-empty", &v), 1);
    cr_assert_eq(v.len, 0);
    cr_assert_eq(head_find(&h, m, "holdfast-probe", &v), 0);
}

Test(head, validation_only_does_not_pause_or_capture)
{
    hp.capture = false;
    hp.head = NULL;
    cr_assert_eq(feed("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), HPE_OK);
    cr_assert_eq(hp.pause, HEAD_PAUSE_NONE);
}

static void assert_refused(const char *msg, const char *reason)
{
    llhttp_errno_t err = feed(msg);
    while (err == HPE_PAUSED) { /* the head was complete before the check failed */
        llhttp_resume(&hp.http);
        const char *at = llhttp_get_error_pos(&hp.http);
        err = head_execute(&hp, msg, msg, (size_t)(at - msg), strlen(msg) - (size_t)(at - msg));
    }
    cr_assert_neq(err, HPE_OK, "%s accepted", msg);
    cr_assert_str_eq(head_error_reason(&hp), reason);
}

Test(head, rfc9112_checks_refuse_the_message)
{
    assert_refused("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                   "more than one Host header field");
    setup();
    assert_refused("GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 request without a Host header field");
    setup();
    assert_refused("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                   "Transfer-Encoding other than chunked");
    setup();
    assert_refused("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
                   "obsolete line folding in a header field");
}

Test(head, a_probe_matched_message_pauses_at_its_end)
{
    const char *m = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok";
    cr_assert_eq(feed(m), HPE_PAUSED);
    cr_assert_eq(hp.pause, HEAD_PAUSE_HEAD_DONE);
    hp.pause_at_end = true;
    llhttp_resume(&hp.http);
    size_t at = (size_t)(llhttp_get_error_pos(&hp.http) - m);
    cr_assert_eq(head_execute(&hp, m, m, at, strlen(m) - at), HPE_PAUSED);
    cr_assert_eq(hp.pause, HEAD_PAUSE_MESSAGE_DONE);
}

Test(head, tls_and_h2c_are_sniffed_from_the_first_bytes)
{
    static const char pri[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    cr_assert(head_sniff_raw("\x16\x03\x01", 3));
    cr_assert(head_sniff_raw(pri, sizeof(pri) - 1));
    cr_assert_not(head_sniff_raw(pri, 10)); /* not yet known */
    cr_assert(head_maybe_h2_preface(pri, 10));
    cr_assert_not(head_sniff_raw("GET / HTTP/1.1\r\n", 16));
    cr_assert_not(head_maybe_h2_preface("GET ", 4));
}

Test(head, probe_field_is_found_in_the_head_only)
{
    const char *in = "GET / HTTP/1.1\r\nHost: a\r\nholdfast-PROBE: n1\r\n\r\n";
    cr_assert(head_has_probe_field(in, strlen(in)));
    const char *body = "POST / HTTP/1.1\r\nHost: a\r\n\r\nHoldfast-Probe: n1\r\n";
    cr_assert_not(head_has_probe_field(body, strlen(body)));
    const char *line = "GET /Holdfast-Probe: HTTP/1.1\r\n\r\n";
    cr_assert_not(head_has_probe_field(line, strlen(line)));
    char big[HEAD_PROBE_SCAN_MAX + 64];
    size_t n = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\n");
    while (n < HEAD_PROBE_SCAN_MAX)
        n += (size_t)snprintf(big + n, sizeof(big) - n, "X: y\r\n");
    n += (size_t)snprintf(big + n, sizeof(big) - n, "Holdfast-Probe: n\r\n\r\n");
    cr_assert_not(head_has_probe_field(big, n)); /* past the bound: relayed */
}

/* Captures the head of m (which must be complete) and asks head_is_navigation. */
static bool navigation(const char *m)
{
    head_parser_init(&hp);
    memset(&h, 0, sizeof(h));
    hp.head = &h;
    hp.capture = true;
    cr_assert_eq(feed(m), HPE_PAUSED, "%s", m);
    cr_assert_eq(hp.pause, HEAD_PAUSE_HEAD_DONE);
    return head_is_navigation(&h, m);
}

Test(head, a_browser_navigation_is_get_or_head_accepting_html_without_upgrade)
{
    /* What browsers send when a page is opened. */
    cr_assert(navigation("GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html,application/xhtml+xml,"
                         "application/xml;q=0.9,*/*;q=0.8\r\n\r\n"));
    cr_assert(navigation("HEAD /x HTTP/1.1\r\nHost: a\r\nAccept: TEXT/HTML\r\n\r\n"));
    cr_assert(navigation("GET / HTTP/1.1\r\nHost: a\r\nAccept: application/json , text/html ; "
                         "level=1;q=0.5\r\n\r\n"));
    /* A second Accept field counts as much as the first. */
    cr_assert(navigation("GET / HTTP/1.1\r\nAccept: application/json\r\nHost: a\r\n"
                         "Accept: text/html\r\n\r\n"));
    cr_assert(navigation("GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html;q=0.001\r\n\r\n"));

    /* API clients: no Accept, a wildcard, JSON, or text/html refused with q=0. */
    cr_assert_not(navigation("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    cr_assert_not(navigation("GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"));
    cr_assert_not(navigation("GET / HTTP/1.1\r\nHost: a\r\nAccept: text/*\r\n\r\n"));
    cr_assert_not(navigation("GET / HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\n\r\n"));
    cr_assert_not(navigation("GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html;q=0\r\n\r\n"));
    cr_assert_not(navigation("GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html; Q=0.000\r\n\r\n"));
    cr_assert_not(
        navigation("GET / HTTP/1.1\r\nHost: a\r\nAccept: text/htmlx, xtext/html\r\n\r\n"));
    cr_assert_not(navigation("GET / HTTP/1.1\r\nHost: a\r\nX-Accept: text/html\r\n"
                             "Content-Type: text/html\r\n\r\n"));
    /* Other methods, even from a browser (a form post). */
    cr_assert_not(navigation("POST / HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\n"
                             "Content-Length: 0\r\n\r\n"));
    cr_assert_not(navigation("OPTIONS / HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\n\r\n"));
    /* An upgrade (WebSocket, h2c) is never answered with a page. */
    cr_assert_not(navigation("GET /ws HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\n"
                             "Connection: Upgrade\r\nUpgrade: websocket\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n\r\n"));
    cr_assert_not(
        navigation("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nAccept: text/html\r\n"
                   "Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQ\r\n\r\n"));
}
