/*
 * fake_http: controller/http.h without a network, for kube_api_fuzz. The controller, its kube
 * clients and Prometheus calls start requests as usual; nothing is sent. The fuzz target picks
 * a pending request and answers it with the status and body its input says, and the callbacks
 * run as http.h promises: on_line for each line of a 2xx stream (cancelling from it stops the
 * stream), on_done exactly once, never from inside http_request_start, and nothing after a
 * cancel.
 *
 * kube_api_fuzz links this file instead of controller/http.c (see meson.build).
 */
#ifndef HOLDFAST_FAKE_HTTP_H
#define HOLDFAST_FAKE_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct http_request;

/* Requests started and not finished or cancelled, over every client. */
size_t fake_http_pending(void);

/* The oldest pending request whose "METHOD URL" contains needle[0, len), or the oldest one
 * when none does (or len is 0); NULL when nothing is pending. */
struct http_request *fake_http_pick(const char *needle, size_t len);

/* The oldest pending request that is not a stream (a watch), or NULL. */
struct http_request *fake_http_pick_plain(void);

/* "METHOD URL" of a pending request, borrowed. */
const char *fake_http_what(const struct http_request *r);

/* The body a pending request sent ("" when none), borrowed. */
const char *fake_http_body(const struct http_request *r);

/*
 * Answers r. status 0 is a transport failure (no response). A 2xx answer to a streaming
 * request hands each line of body to on_line; then, unless keep_open, the stream ends
 * (on_done, curl_code 0, or `broken`: the connection dropped). Any other answer is collected
 * and handed to on_done. r must not be used afterwards unless the stream was kept open and is
 * still pending (check with fake_http_pick).
 */
void fake_http_answer(struct http_request *r, long status, const char *body, size_t len,
                      bool keep_open, bool broken);

/* Calls fn with "METHOD URL" and the body of each request as it starts (inside
 * http_request_start, so before the caller's next step); NULL stops it. */
void fake_http_on_start(void (*fn)(const char *what, const char *body, void *arg), void *arg);

/* Prints each request started and answered on stdout (FUZZ_TRACE=1 turns it on). */
void fake_http_trace(bool on);

#endif
