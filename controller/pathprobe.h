/*
 * pathprobe: asks whether a Service's traffic reaches a holdfast replica yet.
 *
 * Before the leader removes a target's last replica it must know that kube-proxy sends the
 * Service's ClusterIP traffic to a resolver (the EndpointSlice it wrote has propagated), or the
 * requests of that window reach a pod that is going away. pathprobe_send sends one request
 * through the ClusterIP:
 *
 *   GET / HTTP/1.1
 *   Host: <ip>:<port>
 *   User-Agent: holdfast-pathprobe/<version>
 *   Holdfast-Probe: <nonce>
 *   Connection: close
 *
 * on a connection of its own (never one from the client's cache: each probe must be routed by
 * kube-proxy anew), never through a proxy whatever the environment says, and reads only the
 * response head. A holdfast replica answers it itself with 204 and the nonce echoed, never
 * forwarding it (docs/data-plane.md, "What holdfast answers itself"); a pod still in the path
 * gets an ordinary `GET /` and answers whatever it answers. The wire contract (field name,
 * nonce grammar, pathprobe_nonce_new for a fresh nonce) is in common/pathprobe_nonce.h.
 *
 * Thread model: the control thread, like http.h: `done` runs on the http client's event_base.
 */
#ifndef HOLDFAST_PATHPROBE_H
#define HOLDFAST_PATHPROBE_H

#include <stdbool.h>

#include "common/pathprobe_nonce.h"

struct http_client;

/* Default deadline of a probe, when pathprobe_send is given none. */
#define PATHPROBE_DEFAULT_TIMEOUT_MS 2000

enum pathprobe_result {
    PATHPROBE_HOLDFAST, /* 204 with this probe's nonce echoed: a holdfast replica is in the path */
    PATHPROBE_OTHER,    /* an answer that is not holdfast's to this nonce (the pod, another
                           proxy): another status, no echo, another nonce, not HTTP/1 */
    PATHPROBE_REFUSED,  /* the connect was refused */
    PATHPROBE_RESET,    /* the connection was reset, or closed before an answer */
    PATHPROBE_TIMEOUT,  /* no answer head within the deadline (connect included) */
    PATHPROBE_ERROR,    /* another failure: no route to host, out of memory, ... */
};

/* What a probe found. Valid only during the `done` call. */
struct pathprobe_answer {
    enum pathprobe_result result;
    long status;        /* HTTP status of the answer, 0 when none came */
    const char *detail; /* what happened, for a log line, an Event or a condition message:
                           "HTTP 200 without a Holdfast-Probe field", "connect refused (...)" */
};

/* Called once per probe that started, later (never from inside pathprobe_send). */
typedef void (*pathprobe_done_fn)(const struct pathprobe_answer *answer, void *arg);

struct pathprobe; /* one probe in flight */

/*
 * Sends one probe to ip:port (a numeric IPv4 or IPv6 address, the Service's ClusterIP, and the
 * Service port) with `nonce` (valid per pathprobe_nonce_valid; copied). Every probe has a
 * deadline: `timeout_ms` covers the connect and the answer head, PATHPROBE_DEFAULT_TIMEOUT_MS
 * when it is <= 0. Returns the probe, valid until `done` returns or pathprobe_cancel, or NULL
 * (nothing is called then) when ip is not a numeric address, port is not 1-65535, the nonce is
 * invalid, or memory runs out.
 */
struct pathprobe *pathprobe_send(struct http_client *http, const char *ip, unsigned port,
                                 const char *nonce, long timeout_ms, pathprobe_done_fn done,
                                 void *arg);

/* Stops a probe in flight; `done` is never called. Not from within its own `done`. */
void pathprobe_cancel(struct pathprobe *p);

/* Short name of a result, for logs and condition reasons: "Holdfast", "OtherAnswer",
 * "Refused", "Reset", "Timeout", "Error". */
const char *pathprobe_result_name(enum pathprobe_result r);

#endif
