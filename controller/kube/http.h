/*
 * http: asynchronous HTTP(S) requests for the control plane, on libcurl's multi interface driven
 * by the control thread's libevent event_base. Nothing here blocks: curl tells us which sockets
 * and which timeout it wants (CURLMOPT_SOCKETFUNCTION / CURLMOPT_TIMERFUNCTION), libevent waits
 * for them and calls curl_multi_socket_action back.
 *
 * Two kinds of request:
 *   - plain: the whole body is collected and handed to `on_done` with the status code;
 *   - streaming (`on_line` set): while the status is 2xx, every complete line of the body is
 *     handed to `on_line` as it arrives (Kubernetes watches: newline-delimited JSON); a non-2xx
 *     body is collected instead and handed to `on_done`, like a plain request.
 * Either way `on_done` is called exactly once, unless the request is cancelled first.
 *
 * Connections are reused: curl's multi handle keeps a connection cache shared by every request
 * of one client, so a keep-alive connection to the API server serves many requests.
 *
 * TLS: the peer is always verified against the given CA (file or in-memory PEM), or the system
 * store when none is given, unless `insecure` is set; http does not log, the owner of the
 * configuration does (kube_client_new logs the insecure choice at every start).
 *
 * Thread model: a client and its requests belong to the thread running its event_base (the
 * control thread). Nothing here is thread-safe.
 */
#ifndef HOLDFAST_HTTP_H
#define HOLDFAST_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct http_client;
struct http_request;

/* TLS settings of a request. Every pointer is borrowed: it must stay valid until
 * http_request_start returns (curl copies files' names and blobs). */
struct http_tls {
    const char *ca_file;   /* PEM CA bundle file, or NULL */
    const char *ca_data;   /* PEM CA bundle in memory (CURLOPT_CAINFO_BLOB), or NULL */
    size_t ca_len;         /* bytes at ca_data */
    const char *cert_file; /* PEM client certificate file, or NULL */
    const char *cert_data; /* PEM client certificate in memory, or NULL */
    size_t cert_len;       /* bytes at cert_data */
    const char *key_file;  /* PEM client key file, or NULL */
    const char *key_data;  /* PEM client key in memory, or NULL */
    size_t key_len;        /* bytes at key_data */
    bool insecure;         /* skip peer and host verification: only when the user said so */
};

/* What a finished request produced. Valid only during the `on_done` call. */
struct http_response {
    long status;       /* HTTP status code, 0 when no response was received */
    const char *body;  /* the collected body (NUL-terminated; empty for a 2xx stream), owned by
                          http and freed after on_done returns */
    size_t body_len;   /* bytes at body, without the NUL */
    int curl_code;     /* CURLcode of the transfer: 0 (CURLE_OK) when it completed */
    const char *error; /* human message when curl_code != 0 (refused, TLS, timeout), else "" */
    int os_errno;      /* errno of the failed connect or transfer (ECONNREFUSED, ECONNRESET),
                          0 when none or unknown (CURLINFO_OS_ERRNO) */
};

/* Called once when the request ends (completed, failed or timed out); the request handle is
 * freed by http right after this returns and must not be used again. */
typedef void (*http_done_fn)(struct http_request *req, const struct http_response *resp, void *arg);

/* Called with each complete line of a 2xx streaming body, without its '\n' (and '\r'). `line`
 * is NUL-terminated and borrowed for the call. The callback may cancel this request (then
 * neither on_line nor on_done is called again) and may start other requests. */
typedef void (*http_line_fn)(struct http_request *req, const char *line, size_t len, void *arg);

/* One request to start. Every pointer is borrowed until http_request_start returns. */
struct http_request_opts {
    const char *method;         /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *url;            /* absolute URL */
    const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
    const char *bearer_token;   /* adds "Authorization: Bearer <token>", or NULL */
    const char *body;           /* request body (copied), or NULL */
    size_t body_len;            /* bytes at body */
    const struct http_tls *tls; /* TLS settings for https URLs, or NULL for defaults */
    long connect_timeout_ms;    /* 0: curl's default (300 s) */
    long timeout_ms;            /* whole transfer, including a stream's life; 0: none */
    bool no_proxy;              /* straight to the URL's host, whatever the environment's
                                   http_proxy/HTTPS_PROXY/ALL_PROXY say */
    bool fresh_connection;      /* a connection of its own: none from the cache, and it is
                                   closed after (not kept for another request) */
    bool headers_only;          /* the body is not wanted: the transfer ends as soon as the final
                                   response head is in, and completes (curl_code 0, empty body) */
    bool h2_prior_knowledge;    /* HTTP/2 without upgrade on an http:// URL (gRPC, h2c) */
    http_line_fn on_line;       /* non-NULL: streaming request */
    http_done_fn on_done;       /* required */
    void *arg;                  /* passed to the callbacks */
};

/* A client on `base` (borrowed; must outlive the client). Returns NULL when curl cannot be
 * initialised. */
struct http_client *http_client_new(struct event_base *base);

/* Cancels every request still in flight (no callbacks) and frees the client. Must not be called
 * from a callback of one of its requests. */
void http_client_free(struct http_client *c);

/* Starts a request. Returns its handle, valid until on_done returns or http_request_cancel is
 * called, or NULL when the options are invalid or memory runs out (nothing is called then).
 * A request started from inside another request's callback begins right after that callback
 * returns (curl forbids re-entrant calls). */
struct http_request *http_request_start(struct http_client *c, const struct http_request_opts *o);

/* Stops a request in flight and frees it; its callbacks are never called again. Safe from any
 * callback of any request, including its own on_line. Calling it from (or after) the request's
 * own on_done is a mistake: the handle is gone by then. */
void http_request_cancel(struct http_request *r);

/*
 * The value of the response header field `name` (case-insensitive) of the final response
 * (not a 1xx), or of its trailers (gRPC's grpc-status), for use inside the request's own
 * on_done: the last field of that name, or NULL when there is none. *count (when not NULL) gets the number of fields of that name. The
 * value is borrowed until on_done returns.
 */
const char *http_response_header(struct http_request *req, const char *name, size_t *count);

/* Number of requests started and not yet finished or cancelled: the unit tests check with it
 * that every request is freed. */
size_t http_client_active(const struct http_client *c);

#endif
