/*
 * head: HTTP/1 request heads, parsed with llhttp, for connections that are not bound to a
 * backend yet.
 *
 * Two jobs, on the same bytes:
 *  - capture: while the head of a request is being decided (probe, hold or route), its method,
 *    target and header fields are recorded as offsets into the connection's request buffer
 *    (struct head): nothing is copied, every byte of the head stays in the buffer;
 *  - validation: on every request a held connection sends, the checks RFC 9112 asks for that
 *    llhttp leaves to its user (one Host, no obs-fold, Transfer-Encoding chunked only), so a
 *    backend cannot read another request than the one holdfast saw.
 *
 * The parser pauses when a captured head is complete (HEAD_PAUSE_HEAD_DONE) and, when asked
 * to, when its message is complete (HEAD_PAUSE_MESSAGE_DONE, for a probe-matched request
 * whose answer waits for its body). The caller decides, then resumes.
 *
 * The rest reads a captured head: the shared port's Host routing, the data-path probe field,
 * the inputs of probeResponse rule matching, and whether it is a browser navigation (the
 * waiting page's test). Plus two looks at first bytes that need no
 * parser: TLS / HTTP/2 sniffing, and the Holdfast-Probe scan of a relayed connection.
 */
#ifndef HOLDFAST_HEAD_H
#define HOLDFAST_HEAD_H

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>

#include "resolver/probe.h"
#include "resolver/route.h"

#define HEAD_MAX_FIELDS 128

/* Bytes [off, off + len) of a message, counted from its first byte. */
struct head_span {
    size_t off;
    size_t len;
};

/* One captured request head. */
struct head {
    struct head_span method;
    struct head_span url;
    struct head_span names[HEAD_MAX_FIELDS];
    struct head_span values[HEAD_MAX_FIELDS];
    size_t n_fields;
    bool in_value; /* the current field reached its value (an empty one too): the next name
                      starts the next field */
    bool too_many; /* more than HEAD_MAX_FIELDS fields: the rest were not captured */
};

/* Which field the validation is in. */
enum head_field_kind {
    HEAD_FIELD_OTHER,
    HEAD_FIELD_HOST,
    HEAD_FIELD_TRANSFER_ENCODING,
};

/* What the validation of the current message has seen. */
struct head_check {
    char name[24]; /* the current header name, lower-cased, while it fits */
    size_t name_len;
    enum head_field_kind kind;
    char te[16]; /* the current Transfer-Encoding value, while it fits */
    size_t te_len;
    size_t value_pieces; /* pieces of the current header value seen so far */
    unsigned hosts;      /* Host fields in this message's head */
    bool in_trailers;
};

/* Why the parser paused. */
enum head_pause {
    HEAD_PAUSE_NONE,
    HEAD_PAUSE_HEAD_DONE,    /* a captured head is complete: decide it */
    HEAD_PAUSE_MESSAGE_DONE, /* a message asked for with pause_at_end is complete */
};

/* A request parser. Allocated by the caller (head_parser_init), freed with it. */
struct head_parser {
    llhttp_t http;
    struct head *head;      /* where heads are captured (set by the caller, owned by it) */
    bool capture;           /* capture into head and pause when it is complete */
    bool pause_at_end;      /* pause when the current message is complete */
    const char *buf;        /* the first byte of the buffer (obs-fold looks back, never before) */
    const char *msg;        /* the first byte of the current message: spans count from here */
    enum head_pause pause;  /* why the last head_execute paused */
    const char *bad_reason; /* a check of ours failed the message (static text) */
    struct head_check check;
};

/* Prepares a request parser. */
void head_parser_init(struct head_parser *hp);

/*
 * Feeds msg[from, from + n) to the parser; buf <= msg is the start of the buffer holding it
 * and msg the first byte of the current message (the caller keeps every byte of a head from
 * msg on). Returns llhttp's result: HPE_OK, HPE_PAUSED (see hp->pause; llhttp_resume before
 * going on), HPE_PAUSED_UPGRADE, or an error (head_error_reason).
 */
llhttp_errno_t head_execute(struct head_parser *hp, const char *buf, const char *msg, size_t from,
                            size_t n);

/* Why the message was refused (static text). */
const char *head_error_reason(const struct head_parser *hp);

/* The bytes of span s of a head captured from the message at msg. */
const char *head_ptr(const char *msg, struct head_span s);

/* True when span s equals lit, ignoring ASCII case. */
bool head_span_eq(const char *msg, struct head_span s, const char *lit);

/*
 * The fields of h named `name` (case-insensitive): returns how many, with the value of the
 * last in *value (untouched when none).
 */
size_t head_find(const struct head *h, const char *msg, const char *name, struct head_span *value);

/*
 * Shared port: the Host field names the service as name.namespace[.svc[.cluster.local]], with
 * an optional ":port" that picks the service port with that number (the first port without
 * one, or when none has it). Returns the service in snap, with its port index in *port, or
 * NULL. The Host value (cut at host_size - 1) is copied into host for the 404 ("" when none).
 */
const struct route_service *head_route_by_host(const struct head *h, const char *msg,
                                               const struct route_snapshot *snap, size_t *port,
                                               char *host, size_t host_size);

/*
 * Is the captured request a browser navigation, the kind a waiting page answers (waitpage.h)?
 * GET or HEAD, an Accept field that lists text/html (by name, not through a wildcard, and not
 * with q=0), and no Upgrade field (a WebSocket or h2c upgrade is never answered with a page).
 */
bool head_is_navigation(const struct head *h, const char *msg);

/* Fills req (and hdrs[HEAD_MAX_FIELDS], which req points into) from h for probe_match. */
void head_probe_request(const struct head *h, const char *msg, struct probe_header *hdrs,
                        struct probe_request *req);

/* The first bytes p[0, n) are TLS or a complete HTTP/2 prior-knowledge preface. */
bool head_sniff_raw(const char *p, size_t n);

/* p[0, n) may still become an HTTP/2 preface (a prefix of it; true for n == 0). */
bool head_maybe_h2_preface(const char *p, size_t n);

/*
 * Does the first request head in p[0, n) carry a Holdfast-Probe field? Looks at the start of
 * each header line up to the head's end or HEAD_PROBE_SCAN_MAX bytes, nothing more: this runs
 * once on every connection that is relayed unparsed, so it must cost next to nothing (15-30 ns
 * for a curl-like head, about 100 ns for a browser's, 6 us at worst). The leader sends a
 * probe's whole head in one write; a head split so that the field comes in a later read, or
 * past the bound, is relayed like any request (the leader then sees another answer than
 * holdfast's, and tries again: nothing is lost but time).
 */
bool head_has_probe_field(const char *p, size_t n);

/* Bytes of a relayed connection's first read that head_has_probe_field looks at: the leader's
 * whole probe head is under 300 bytes; the bound keeps the look at a few microseconds even
 * for a first read of 64 KiB of two-byte lines (about 200 us unbounded). */
#define HEAD_PROBE_SCAN_MAX 2048

#endif
