/*
 * conn: the life of one client connection, in the order it is lived:
 *
 *   1. accept -> 2. head (read, parse) -> 3. decide: probe answer | hold -> 4. connect
 *   -> 5. relay -> 6. close
 *
 * The states are enum conn_state; set_state is the one transition and conn_arm_timer the one
 * place a deadline is derived from the state. The parts that are not about one connection's
 * life are modules of their own: head.h (HTTP/1 heads, Host routing), hold.h (the hold
 * limits), pick.h (endpoint choice) and pace.h (how fast released held connections go to an
 * endpoint).
 *
 * Memory per connection is bounded: request bytes are buffered up to the hold buffer size
 * (then reads stop and TCP backpressure does the rest), held bytes are reserved under the
 * service's and the resolver's limits before they are read, unsent answers stop the reading of
 * further requests at OUT_LIMIT, and a relay keeps at most one read's worth of pending bytes
 * per direction before it stops reading the other side.
 *
 * Any step may answer, hold, connect or close the connection it works on; its caller then
 * stops (moved_on). Closing only marks the connection (conn_close): it is freed in one place,
 * free_closed, once the libevent callback that closed it has returned.
 */
#include "resolver/conn.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <limits.h>
#include <stddef.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/pathprobe_nonce.h"
#include "resolver/head.h"
#include "resolver/hold.h"
#include "resolver/httpans.h"
#include "resolver/pace.h"
#include "resolver/pick.h"
#include "resolver/waitpage.h"

enum conn_state {
    CONN_HEAD,       /* reading and parsing the request head (HTTP, service not ready) */
    CONN_HELD,       /* in the service's hold queue, waiting for a ready endpoint */
    CONN_CONNECTING, /* connecting to a backend; nothing written to it yet */
    CONN_BACKOFF,    /* waiting before the next connect attempt */
    CONN_RELAY,      /* bound to a backend: bytes relayed both ways */
    CONN_ANSWER,     /* writing holdfast's own final answer, then LINGER */
    CONN_LINGER,     /* answer written and write side shut: draining reads before close */
};

/* Bytes data[off, len) are pending. */
struct buf {
    char *data;
    size_t off;
    size_t len;
    size_t cap;
};

#define MAX_FAILED 4

#define LINGER_MS 2000

/* After its last answer holdfast reads and drops what the client still sends, so that closing
 * does not reset the connection before the answer was read. A client that keeps sending is
 * not read past this much: reading stops and the socket closes when LINGER_MS is over (not
 * before: closing with unread bytes sends a reset, which would drop the part of the answer
 * the client has not received yet). */
#define LINGER_MAX_BYTES (256 * 1024)

#define DISPATCH_BATCH 64

/* Unsent answers a connection may have before holdfast stops reading its requests: a client
 * that pipelines probes and never reads their answers is paused here, then ended by the head
 * timeout, instead of growing its output without bound. A paused client that keeps reading
 * keeps its connection: see paused_client_read. */
#define OUT_LIMIT (64 * 1024)

struct conn {
    struct worker *w;
    bool closing; /* closed: no more work, freed by conn_reap once the stack unwinds */
    TAILQ_ENTRY(conn) close_link;
    struct svc_state *svc; /* one reference; NULL until known (shared port) */
    bool shared;           /* accepted on the shared Host-routed port */
    size_t port;           /* index of the service port the connection is for */
    enum svc_protocol proto;
    enum conn_state state;
    int cfd; /* client socket */
    int bfd; /* backend socket, -1 when none */
    struct event crev, cwev, brev, bwev, timer;
    bool crev_on, cwev_on, brev_on, bwev_on;
    bool crev_closed_only; /* crev watches only for the client's close (buffer full) */

    struct buf in;  /* client -> backend, not yet written */
    struct buf out; /* -> client (our answers, backend bytes), not yet written */

    /* HTTP/1 parsing, only while not bound to a backend. */
    struct head_parser *parser; /* NULL while not parsing */
    struct head *head;          /* the captured head; kept when a parser is let go */
    size_t parse_off;           /* bytes of `in` (from in.off) already fed to the parser */
    bool out_paused;            /* reads stopped until unsent answers drop below OUT_LIMIT */
    int paused_outq; /* while paused: the kernel's unacknowledged bytes at the last look */
    const struct probe_response *probe; /* the current request is answered by this rule */
    bool probe_head;                    /* ... and it is a HEAD request */
    bool seen_request;                  /* a complete request head was seen on this connection */
    bool http1;                         /* the client speaks HTTP/1 (502 applies) */
    bool raw;           /* TLS, h2c, tcp, past an Upgrade, or ready at accept: not parsed (see
                           validate_more for a ready one that ends up waiting) */
    bool sniffed;       /* http1 was decided from the first bytes */
    bool parse_if_held; /* HTTP port, ready at accept: parsed if it ends up waiting */
    bool probe_check;   /* HTTP port, ready at accept: its first bytes are still to be looked at
                           for a data-path probe (check_first_bytes); counted forwarded after */

    /* The current request is a browser navigation answered by the waiting page: this message
     * (owned; page_close: the connection ends after it), sent once the request is complete. */
    char *page_msg;
    size_t page_len;
    bool page_close;

    /* Holding. */
    struct hold_entry hold; /* in svc->workers[w].held while queued; accept time */
    bool held;              /* counted in the held gauges */
    size_t held_bytes;      /* bytes of `in` reserved in the held-bytes counters (hold_reserve) */
    uint64_t held_ns;       /* when it was first held, 0 never */
    uint64_t deadline_ns;   /* hold deadline, 0 none */
    bool pace_waiting;      /* held, its service ready: waiting for a pacing slot (pace_wait) */
    bool paced;             /* holds a slot of its backend's pacing window (pace_release) */
    uint64_t paced_ns;      /* when it took the slot: its connect's start */
    bool pace_slow;         /* its connect was pending at PACE_LOSS_MS: counted as a loss */

    /* Backend. */
    struct addr backend;
    bool bound; /* connected; counted in the backend's in-flight load */
    struct addr failed[MAX_FAILED];
    size_t n_failed;
    unsigned backoff_ms;
    uint64_t to_backend;
    uint64_t from_backend;
    size_t lingered; /* bytes read and dropped in LINGER */
    bool client_eof, backend_eof;
    bool client_shut; /* our write side to the client is shut (the backend ended first) */

    TAILQ_ENTRY(conn) all_link;
};

/* The steps, in the order they are defined below. */
static void conn_arm_timer(struct conn *c);
static void on_client_read(evutil_socket_t fd, short what, void *arg);
static void parse_more(struct conn *c);
static bool paused_client_read(struct conn *c);
static void decide_after_head(struct conn *c);
static void answer_datapath_probe(struct conn *c);
static void route_by_host(struct conn *c);
static void answer_probe(struct conn *c, size_t consumed);
static bool answer_waiting_page(struct conn *c, const struct route_service *r);
static void conn_answer_error(struct conn *c, int status, const char *error, const char *reason,
                              enum outcome outcome);
static void conn_send_final(struct conn *c, char *msg, size_t len);
static void answer_flush(struct conn *c);
static size_t conn_reserve(struct conn *c, size_t want, bool all);
static void conn_release(struct conn *c, size_t n);
static void unhold(struct conn *c);
static void conn_hold(struct conn *c);
static void conn_hold_queue(struct conn *c, bool wake);
static void validate_more(struct conn *c);
static void conn_dispatch(struct conn *c);
static bool pace_wait(struct conn *c, const struct addr *a);
static void pace_release(struct conn *c, enum pace_end how);
static void connect_failed(struct conn *c, int err);
static void close_backend(struct conn *c);
static void connected(struct conn *c);
static void check_first_bytes(struct conn *c, const char *p, size_t n, bool buffered);
static void answer_probe_instead_of_relay(struct conn *c);
static void relay_from_client(struct conn *c);
static void backend_ended(struct conn *c, bool error);
static void relay_done_check(struct conn *c);
static void on_client_write(evutil_socket_t fd, short what, void *arg);
static void on_backend_read(evutil_socket_t fd, short what, void *arg);
static void on_backend_write(evutil_socket_t fd, short what, void *arg);
static void on_timer(evutil_socket_t fd, short what, void *arg);
static void conn_close(struct conn *c);
static size_t free_closed(struct worker *w);

/* The connection whose hold queue entry is e. */
static struct conn *conn_of(struct hold_entry *e)
{
    return (struct conn *)((char *)e - offsetof(struct conn, hold));
}

/* ---- state: the one transition, and the one place deadlines are derived ---- */

static void set_state(struct conn *c, enum conn_state s)
{
    c->state = s;
    conn_arm_timer(c);
}

/*
 * A step (reading, parsing, deciding, answering, connecting) may answer c, hold it, connect
 * it or close it. Its caller, which worked on c in state `was`, goes on only when none of
 * that happened: this is the one check every caller makes, and no step returns a "c is gone"
 * flag. Nothing is freed under a caller (conn_close only marks c; free_closed frees it once
 * the handler has returned), so looking at c here is always safe.
 */
static bool moved_on(const struct conn *c, enum conn_state was)
{
    return c->closing || c->state != was;
}

static void conn_arm_timer(struct conn *c)
{
    const struct dp_limits *l = &c->w->dp->limits;
    uint64_t now = clock_mono_ns();
    uint64_t at = 0;
    switch (c->state) {
    case CONN_HEAD:
        at = now + (uint64_t)l->head_timeout_s * 1000000000ull;
        break;
    case CONN_HELD:
        at = c->deadline_ns;
        break;
    case CONN_CONNECTING: {
        uint64_t ct = now + (uint64_t)l->connect_timeout_ms * 1000000ull;
        uint64_t loss_at = c->paced_ns + (uint64_t)PACE_LOSS_MS * 1000000ull;
        if (c->paced && !c->pace_slow && loss_at < ct) /* still pending then: its SYN was lost */
            ct = loss_at;
        at = (c->deadline_ns && c->deadline_ns < ct) ? c->deadline_ns : ct;
        break;
    }
    case CONN_BACKOFF: {
        uint64_t bt = now + (uint64_t)c->backoff_ms * 1000000ull;
        at = (c->deadline_ns && c->deadline_ns < bt) ? c->deadline_ns : bt;
        break;
    }
    case CONN_RELAY:
        if (l->idle_timeout_s)
            at = now + (uint64_t)l->idle_timeout_s * 1000000000ull;
        break;
    case CONN_ANSWER:
    case CONN_LINGER:
        at = now + (uint64_t)LINGER_MS * 1000000ull;
        break;
    }
    event_del(&c->timer);
    if (!at)
        return;
    uint64_t d = at > now ? at - now : 0;
    struct timeval tv = {.tv_sec = (time_t)(d / 1000000000ull),
                         .tv_usec = (suseconds_t)((d % 1000000000ull) / 1000)};
    event_add(&c->timer, &tv);
}

/* ---- buffers ---- */

static size_t buf_pending(const struct buf *b)
{
    return b->len - b->off;
}

/* The first pending byte of c's request buffer. */
static const char *in_ptr(const struct conn *c)
{
    return c->in.data + c->in.off;
}

static int buf_append(struct buf *b, const char *data, size_t n)
{
    if (b->off && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + n > b->cap) {
        if (b->off) {
            memmove(b->data, b->data + b->off, b->len - b->off);
            b->len -= b->off;
            b->off = 0;
        }
        if (b->len + n > b->cap) {
            size_t cap = b->cap ? b->cap : 512;
            while (cap < b->len + n)
                cap *= 2;
            char *p = realloc(b->data, cap);
            if (!p)
                return -1;
            b->data = p;
            b->cap = cap;
        }
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

static void buf_free(struct buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* Writes pending bytes to fd. Returns 0 (all or some written, or EAGAIN) or -1 on error. */
static int buf_flush(struct buf *b, int fd)
{
    while (buf_pending(b)) {
        ssize_t n = send(fd, b->data + b->off, buf_pending(b), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return 0;
            return -1;
        }
        b->off += (size_t)n;
    }
    b->off = b->len = 0;
    return 0;
}

/* ---- event interest: each helper only touches libevent when the interest changes ---- */

static void watch(struct event *ev, bool *on, bool want, const struct timeval *tv)
{
    if (want == *on)
        return;
    if (want)
        event_add(ev, tv);
    else
        event_del(ev);
    *on = want;
}

static void client_read(struct conn *c, bool want)
{
    if (c->crev_closed_only) {
        event_del(&c->crev);
        c->crev_on = false;
        event_assign(&c->crev, c->w->base, c->cfd, EV_READ | EV_PERSIST, on_client_read, c);
        c->crev_closed_only = false;
    }
    watch(&c->crev, &c->crev_on, want, NULL);
}

/* Stops reading but still learns when the client goes away (EPOLLRDHUP). */
static void client_watch_close_only(struct conn *c)
{
    if (c->crev_closed_only)
        return;
    event_del(&c->crev);
    event_assign(&c->crev, c->w->base, c->cfd, EV_CLOSED | EV_PERSIST, on_client_read, c);
    event_add(&c->crev, NULL);
    c->crev_on = true;
    c->crev_closed_only = true;
}

static void client_write(struct conn *c, bool want)
{
    watch(&c->cwev, &c->cwev_on, want, NULL);
}

static void backend_read(struct conn *c, bool want)
{
    watch(&c->brev, &c->brev_on, want, NULL);
}

static void backend_write(struct conn *c, bool want)
{
    watch(&c->bwev, &c->bwev_on, want, NULL);
}

/* ---- the connection's service ---- */

static const struct route_service *conn_route(const struct conn *c)
{
    return c->svc ? c->svc->workers[c->w->id].route : NULL;
}

/* The ready endpoints of the connection's service port (none when it is unknown now). */
static const struct route_port *conn_port(const struct conn *c)
{
    const struct route_service *r = conn_route(c);
    return r && c->port < r->n_ports ? &r->ports[c->port] : NULL;
}

static bool conn_ready(const struct conn *c)
{
    const struct route_port *p = conn_port(c);
    return p && p->n_endpoints > 0;
}

/* The connection's service's per-worker state: its hold queue, loads and cursor. */
static struct svc_worker *conn_sw(const struct conn *c)
{
    return &c->svc->workers[c->w->id];
}

static void count(struct conn *c, enum outcome o)
{
    if (c->svc)
        counter_add(&c->svc->requests[o], 1);
}

/* Unparsed connections on HTTP ports: do the first bytes look like HTTP/1 (so a backend that
 * closes without answering gets a 502), or like TLS / HTTP/2 (where we only close)? */
static void note_first_bytes(struct conn *c, const char *p, size_t n)
{
    if (c->sniffed || n == 0)
        return;
    c->sniffed = true;
    c->http1 = c->proto == PROTO_HTTP && (unsigned char)p[0] != 0x16 &&
               !(n >= 4 && memcmp(p, "PRI ", 4) == 0);
}

/* How many request bytes this connection may buffer before reads stop. */
static size_t in_limit(const struct conn *c)
{
    const struct dp_limits *l = &c->w->dp->limits;
    if (c->state == CONN_HEAD && !c->seen_request)
        return l->max_head_bytes + 1; /* one more byte tells "too large" from "exactly full" */
    return l->hold_buffer_bytes > l->max_head_bytes ? l->hold_buffer_bytes : l->max_head_bytes + 1;
}

/* The current request is answered by holdfast (a probeResponse rule or the waiting page) once
 * the message is complete: its body is dropped as it is parsed. */
static bool answer_pending(const struct conn *c)
{
    return c->probe || c->page_msg;
}

/* ---- 1. accept ---- */

void conn_accept(struct worker *w, int fd, const struct route_listener *l)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->w = w;
    c->cfd = fd;
    c->bfd = -1;
    c->hold.arrived_ns = clock_mono_ns();
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    event_assign(&c->crev, w->base, fd, EV_READ | EV_PERSIST, on_client_read, c);
    event_assign(&c->cwev, w->base, fd, EV_WRITE | EV_PERSIST, on_client_write, c);
    event_assign(&c->timer, w->base, -1, 0, on_timer, c);
    TAILQ_INSERT_TAIL(&w->conns, c, all_link);
    w->nconns++;
    atomic_fetch_add(&w->dp->open_conns, 1);
    counter_add(&w->dp->accepted, 1);

    if (l->kind == LISTENER_SHARED) {
        c->shared = true;
        c->proto = PROTO_HTTP;
        set_state(c, CONN_HEAD);
        client_read(c, true);
        return;
    }
    const struct route_service *r = l->service;
    c->svc = svc_state_ref(r->svc);
    c->port = l->port;
    c->proto = conn_port(c) ? conn_port(c)->protocol : PROTO_HTTP;
    c->deadline_ns = c->hold.arrived_ns + (uint64_t)r->hold_timeout_s * 1000000000ull;
    client_read(c, true);
    if (conn_ready(c)) {
        /* Ready: connect at once; whatever the client sends meanwhile is buffered as is. */
        c->raw = true;
        c->parse_if_held = c->proto == PROTO_HTTP;
        c->probe_check = c->proto == PROTO_HTTP;
        conn_dispatch(c);
    } else if (c->proto == PROTO_TCP) {
        c->raw = true;
        conn_hold(c); /* the server may speak first: wake now */
    } else {
        set_state(c, CONN_HEAD);
    }
}

/* ---- 2. head: read the request, parse its head (head.h) ---- */

/*
 * The client closed its side before the connection was bound to a backend. Before a complete
 * request there is nothing to answer. An HTTP client that closes while held has gone away
 * (as Go's and nginx's servers judge it): cancelled. Otherwise (tcp, or a connection that was
 * never held) it may only have half-closed and wait for the answer: the close is relayed in
 * order once connected.
 */
static void client_ended_before_relay(struct conn *c)
{
    c->client_eof = true;
    if (c->state == CONN_HEAD) {
        if (buf_pending(&c->out) && !c->out_paused) {
            /* Answers to requests it sent before closing its side are still owed: write
             * them, then close (a health checker may pipeline, half-close and read). */
            client_read(c, false);
            set_state(c, CONN_ANSWER);
            answer_flush(c);
            return;
        }
        conn_close(c);
        return;
    }
    if (c->held && c->proto == PROTO_HTTP) {
        count(c, OUTCOME_CANCELLED);
        log_debug("held client went away", "service=%s", c->svc->key);
        conn_close(c);
        return;
    }
    client_read(c, false);
}

/*
 * Reads client bytes into `in` while not relaying. A held connection reads only what it could
 * reserve under the held-bytes limits; at a limit it stops reading (the client's TCP window
 * does the rest) and reads again once it is bound to a backend.
 */
static void read_into_in(struct conn *c)
{
    size_t limit = in_limit(c);
    size_t pending = buf_pending(&c->in);
    if (pending >= limit) {
        client_watch_close_only(c);
        return;
    }
    /* Read into the worker's scratch buffer and keep exactly what came: a held connection
     * costs the size of its request, not the size of a read. */
    size_t want = limit - pending;
    if (want > c->w->scratch_len)
        want = c->w->scratch_len;
    size_t reserved = 0;
    if (c->held) {
        reserved = conn_reserve(c, want, false);
        if (reserved == 0) {
            client_watch_close_only(c);
            return;
        }
        want = reserved;
    }
    ssize_t n = recv(c->cfd, c->w->scratch, want, 0);
    if (reserved)
        conn_release(c, n > 0 ? reserved - (size_t)n : reserved);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        n = 0; /* reset: the client is gone, same as EOF below */
    }
    if (n == 0) {
        client_ended_before_relay(c);
        return;
    }
    if (buf_append(&c->in, c->w->scratch, (size_t)n) < 0)
        conn_close(c);
}

static void on_client_read(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->closing)
        return;
    switch (c->state) {
    case CONN_RELAY:
        if (c->crev_closed_only) {
            client_read(c, true);
            return;
        }
        relay_from_client(c);
        return;
    case CONN_LINGER: {
        ssize_t n = recv(c->cfd, c->w->scratch, c->w->scratch_len, 0);
        if (n > 0)
            c->lingered += (size_t)n;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            conn_close(c);
        else if (c->lingered > LINGER_MAX_BYTES)
            client_read(c, false);
        return;
    }
    case CONN_ANSWER:
        client_read(c, false);
        return;
    case CONN_HEAD:
    case CONN_HELD:
    case CONN_CONNECTING:
    case CONN_BACKOFF:
        break;
    }
    if (c->crev_closed_only && (what & EV_CLOSED) && !(what & EV_READ)) {
        /* Reading had stopped (buffer or held bytes full) and the client hung up. A held HTTP
         * client is gone (cancelled); any other may only have half-closed, with bytes still
         * unread in the socket: they are read once relayed, and its end after them. */
        if (c->state == CONN_HEAD || (c->held && c->proto == PROTO_HTTP))
            client_ended_before_relay(c);
        else
            client_read(c, false);
        return;
    }
    enum conn_state was = c->state;
    read_into_in(c);
    if (moved_on(c, was))
        return;
    if (c->state == CONN_HEAD) {
        if (!c->parser && !c->raw) {
            if (head_maybe_h2_preface(in_ptr(c), buf_pending(&c->in)) && buf_pending(&c->in) > 0)
                return; /* wait for the rest of a possible HTTP/2 preface */
            if (head_sniff_raw(in_ptr(c), buf_pending(&c->in))) {
                c->raw = true;
                c->http1 = false;
                c->sniffed = true;
                if (c->shared) {
                    /* The shared port routes by an HTTP/1 Host header: TLS and HTTP/2 carry
                     * none holdfast can read, and an HTTP/1 answer means nothing to them. */
                    counter_add(&c->w->dp->bad_requests, 1);
                    log_debug("not HTTP/1 on the shared port: closed", NULL);
                    conn_close(c);
                    return;
                }
                conn_hold(c);
                return;
            }
            c->http1 = true;
            c->sniffed = true;
        }
        parse_more(c);
    } else {
        if (c->probe_check && buf_pending(&c->in) > 0) {
            check_first_bytes(c, in_ptr(c), buf_pending(&c->in), true);
            if (moved_on(c, was))
                return;
        }
        validate_more(c); /* waiting: keep validating framing so a smuggling attempt gets 400 */
    }
}

static void parse_more(struct conn *c)
{
    if (!c->parser) {
        c->parser = malloc(sizeof(*c->parser));
        if (!c->head) /* kept when a parser was let go (an Upgrade, a final answer) */
            c->head = calloc(1, sizeof(*c->head));
        if (!c->parser || !c->head) {
            conn_close(c);
            return;
        }
        head_parser_init(c->parser);
        c->parse_off = 0;
    }
    /* After a pause the parser may have steps left that consume no byte (a bodyless
     * request's message-complete): it is run again even when every byte was fed. */
    bool resumed = false;
    while (!c->closing && c->parser && (c->parse_off < buf_pending(&c->in) || resumed)) {
        if (c->state == CONN_HEAD && buf_pending(&c->out) >= OUT_LIMIT) {
            /* The client does not read its answers: stop reading and answering its requests
             * until it does (on_client_write resumes), or the head timeout ends it. */
            c->out_paused = true;
            c->paused_outq = INT_MAX;
            paused_client_read(c);
            client_read(c, false);
            return;
        }
        resumed = false;
        const char *base = c->in.data + c->in.off;
        c->parser->head = c->head;
        c->parser->capture = c->state == CONN_HEAD;
        c->parser->pause_at_end = answer_pending(c);
        llhttp_errno_t err = head_execute(c->parser, c->in.data, base, c->parse_off,
                                          buf_pending(&c->in) - c->parse_off);
        if (err == HPE_OK) {
            c->parse_off = buf_pending(&c->in);
            break;
        }
        size_t pos = (size_t)(llhttp_get_error_pos(&c->parser->http) - base);
        if (err == HPE_PAUSED) {
            c->parse_off = pos;
            llhttp_resume(&c->parser->http);
            resumed = true;
            if (c->parser->pause == HEAD_PAUSE_HEAD_DONE) {
                decide_after_head(c);
                if (moved_on(c, CONN_HEAD))
                    return;
            } else if (c->parser->pause == HEAD_PAUSE_MESSAGE_DONE) {
                answer_probe(c, pos);
                if (moved_on(c, CONN_HEAD))
                    return;
            }
            continue;
        }
        if (err == HPE_PAUSED_UPGRADE) {
            /* Upgrade or CONNECT: what follows is not HTTP/1; stop parsing, hold the bytes. */
            free(c->parser);
            c->parser = NULL;
            c->raw = true;
            if (c->state == CONN_HEAD)
                conn_hold(c);
            return;
        }
        /* Malformed, or smuggling-ambiguous framing: refuse before anything is relayed. */
        const char *reason = head_error_reason(c->parser);
        log_debug("bad request", "service=%s error=%s reason=%s", c->svc ? c->svc->key : NULL,
                  llhttp_errno_name(err), reason);
        if (!c->svc)
            counter_add(&c->w->dp->bad_requests, 1);
        conn_answer_error(c, 400, "bad request", reason, OUTCOME_BAD_REQUEST);
        return;
    }
    if (c->closing)
        return;
    if (c->state == CONN_HEAD && c->parser && !answer_pending(c) &&
        buf_pending(&c->in) > c->w->dp->limits.max_head_bytes) {
        if (!c->svc)
            counter_add(&c->w->dp->bad_requests, 1);
        conn_answer_error(c, 431, "request header fields too large",
                          "request head larger than the limit", OUTCOME_BAD_REQUEST);
        return;
    }
    if (c->state == CONN_HEAD && answer_pending(c) && c->parser) {
        /* A probe's body needs no keeping (nor a waiting page's): drop what was parsed. */
        c->in.off += c->parse_off;
        c->parse_off = 0;
    }
}

/*
 * A connection paused at OUT_LIMIT waits for its client to read. The kernel reports the socket
 * writable again only once a good part of its send queue has drained (a third, by default),
 * and for a queue the kernel grew to megabytes that is seconds of steady reading: the head
 * timeout alone would end a client that reads all along. So when it fires on a paused
 * connection, this looks at the client's progress instead: true when the bytes the client has
 * not yet acknowledged went down since the last look (taken when it paused, at each write
 * and at each of these calls).
 */
static bool paused_client_read(struct conn *c)
{
    int q = 0;
    if (ioctl(c->cfd, SIOCOUTQ, &q) < 0)
        return false;
    bool read = q < c->paused_outq;
    c->paused_outq = q;
    return read;
}

/* ---- 3. decide: data-path probe, Host routing, ready, probe rule, waiting page, or hold ---- */

/* The head of a request is complete: a data-path probe is answered, the shared port routes by
 * Host, a ready service is connected to, a probeResponse rule answers (once the message is
 * complete: c->probe), a browser navigation gets the service's waiting page if it has one
 * (c->page_msg, also once complete), anything else is held. Parsing goes on only for a
 * request answered so (not moved_on). */
static void decide_after_head(struct conn *c)
{
    c->seen_request = true;
    answer_datapath_probe(c);
    if (moved_on(c, CONN_HEAD))
        return;
    if (c->shared) {
        route_by_host(c);
        if (!c->svc)
            return;
    }
    const struct route_service *r = conn_route(c);
    if (conn_ready(c)) {
        conn_dispatch(c); /* ready: the head and everything after it goes to the backend */
        return;
    }
    struct head *h = c->head;
    if (h->too_many) {
        conn_answer_error(c, 431, "request header fields too large", "too many header fields",
                          OUTCOME_BAD_REQUEST);
        return;
    }
    if (r && r->probes && r->probes->rules && probe_rules_count(r->probes->rules) > 0) {
        struct probe_header hdrs[HEAD_MAX_FIELDS];
        struct probe_work work;
        struct probe_request req = {.work = &work};
        head_probe_request(h, in_ptr(c), hdrs, &req);
        const struct probe_response *resp = probe_match(r->probes->rules, &req);
        if (work.gave_up)
            counter_add(&c->w->dp->regex_limit_hits, 1);
        if (resp) {
            c->probe = resp;
            c->probe_head = head_span_eq(in_ptr(c), h->method, "HEAD");
            return; /* answered when the message (and any body) is complete */
        }
    }
    if (answer_waiting_page(c, r))
        return;
    conn_hold(c);
}

/*
 * A browser navigation to a service with a waiting page and no ready endpoint (this is only
 * reached on an HTTP/1 port: TLS, h2c and tcp ports are never parsed, and gRPC is HTTP/2):
 * the page's answer is made now, while the route is at hand, and sent when the message is
 * complete (answer_probe), which also wakes the service. Returns true when it will be.
 */
static bool answer_waiting_page(struct conn *c, const struct route_service *r)
{
    if (!r || !r->page || !head_is_navigation(c->head, in_ptr(c)))
        return false;
    c->page_close = !llhttp_should_keep_alive(&c->parser->http);
    c->page_msg = waitpage_answer(r->page, head_span_eq(in_ptr(c), c->head->method, "HEAD"),
                                  c->page_close, &c->page_len);
    if (!c->page_msg)
        conn_close(c); /* out of memory */
    return true;
}

/*
 * A data-path probe (common/pathprobe_nonce.h) is answered here, whatever the state of the
 * service, on a service's HTTP port or the shared one (whatever its Host): 204 with the nonce
 * echoed, then close. It is never held, forwarded, matched against probeResponse rules, or
 * counted as a request; it wakes nothing. A Holdfast-Probe field without a valid nonce gets 400
 * (counted as a bad request, like every request holdfast refuses). A head without a
 * Holdfast-Probe field is left alone.
 */
static void answer_datapath_probe(struct conn *c)
{
    struct head_span v = {0, 0};
    size_t found = head_find(c->head, in_ptr(c), PATHPROBE_HEADER, &v);
    if (!found)
        return;
    const char *nonce = head_ptr(in_ptr(c), v);
    size_t len = v.len;
    while (len > 0 && (nonce[len - 1] == ' ' || nonce[len - 1] == '\t'))
        len--;
    const char *bad = NULL;
    if (found > 1)
        bad = "Holdfast-Probe header field repeated";
    else if (!pathprobe_nonce_valid(nonce, len))
        bad = "Holdfast-Probe nonce must be 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'";
    if (bad) {
        log_debug("bad data-path probe", "service=%s reason=%s", c->svc ? c->svc->key : NULL, bad);
        if (!c->svc)
            counter_add(&c->w->dp->bad_requests, 1);
        conn_answer_error(c, 400, "bad request", bad, OUTCOME_BAD_REQUEST);
        return;
    }
    counter_add(&c->w->dp->datapath_probes, 1);
    if (log_enabled(LOG_DEBUG)) {
        char text[PATHPROBE_NONCE_MAX + 1];
        memcpy(text, nonce, len);
        text[len] = '\0';
        log_debug("data-path probe answered", "service=%s nonce=%s", c->svc ? c->svc->key : NULL,
                  text);
    }
    size_t msg_len = 0;
    char *msg = httpans_datapath_probe(nonce, len, &msg_len);
    conn_send_final(c, msg, msg_len);
}

/* Shared port: the Host header names the service (head_route_by_host): c->svc. When it names
 * none, c is answered 404 instead. */
static void route_by_host(struct conn *c)
{
    char host[256];
    size_t port = 0;
    const struct route_service *r =
        head_route_by_host(c->head, in_ptr(c), c->w->snap, &port, host, sizeof(host));
    if (!r) {
        counter_add(&c->w->dp->unknown_host, 1);
        size_t len;
        char *msg = httpans_error(404, "unknown service", NULL, NULL, 0, &len, "host", host, NULL);
        conn_send_final(c, msg, len);
        return;
    }
    c->svc = svc_state_ref(r->svc);
    c->shared = false;
    c->port = port;
    c->deadline_ns = c->hold.arrived_ns + (uint64_t)r->hold_timeout_s * 1000000000ull;
}

/*
 * A waiting page wakes the service as a held request does, at most once a WAITPAGE_WAKE_EVERY_MS
 * per service (all workers): every page signalled a wake before, deduplicated only while one
 * was queued, so a flood of browsers kept the control thread busy (bench/waitpage: a quarter of
 * a CPU; in Kubernetes mode a /scale read after another). The page refreshes after Retry-After
 * (at least 1 s), and a page after a failed wake asks again.
 */
static void page_wake(struct svc_state *svc, struct wakeq *q)
{
    int64_t now = (int64_t)clock_mono_ns();
    int64_t last = atomic_load(&svc->page_wake_ns);
    if (last && now - last < (int64_t)WAITPAGE_WAKE_EVERY_MS * 1000000)
        return;
    if (!atomic_compare_exchange_strong(&svc->page_wake_ns, &last, now))
        return; /* another worker's page signals it */
    if (wakeq_push_wake(q, svc))
        counter_add(&svc->wakes, 1);
}

/* A request answered by a probe rule or the waiting page is complete: answer it and drop its
 * bytes. Parsing goes on only on a kept-alive connection (not moved_on). A waiting page wakes
 * the service as a held request does: the browser's refresh then finds it started. */
static void answer_probe(struct conn *c, size_t consumed)
{
    bool keep_alive;
    size_t len;
    char *msg;
    if (c->page_msg) {
        keep_alive = !c->page_close;
        msg = c->page_msg;
        len = c->page_len;
        c->page_msg = NULL;
        counter_add(&c->svc->waiting_pages, 1);
        page_wake(c->svc, &c->w->dp->wakeq);
        log_debug("waiting page answered", "service=%s", c->svc->key);
    } else {
        keep_alive = llhttp_should_keep_alive(&c->parser->http);
        msg = httpans_probe(c->probe->status, c->probe->body, c->probe->body_len, c->probe_head,
                            !keep_alive, &len);
        count(c, OUTCOME_PROBE);
        c->probe = NULL;
    }
    if (!msg || buf_append(&c->out, msg, len) < 0) {
        free(msg);
        conn_close(c);
        return;
    }
    free(msg);
    c->in.off += consumed;
    c->parse_off = 0;
    if (!keep_alive) {
        free(c->parser);
        c->parser = NULL;
        c->in.off = c->in.len = 0;
        set_state(c, CONN_ANSWER);
        answer_flush(c);
        return;
    }
    conn_arm_timer(c); /* the head timeout starts again for the next request */
    answer_flush(c);
}

/* ---- 3a. holdfast's own answers (then LINGER) ---- */

/* Queues a final answer on an HTTP/1 connection, then closes (after lingering). */
static void conn_answer_error(struct conn *c, int status, const char *error, const char *reason,
                              enum outcome outcome)
{
    if (c->closing)
        return;
    count(c, outcome);
    if (c->svc)
        unhold(c);
    close_backend(c);
    free(c->parser);
    c->parser = NULL;
    if (!c->http1) {
        conn_close(c); /* other protocols: holdfast has no words there, it closes */
        return;
    }
    size_t len;
    char *msg = httpans_error(status, error, c->svc ? c->svc->key : NULL, reason, 1, &len, NULL);
    conn_send_final(c, msg, len);
}

/* Sends msg (taking it; NULL means out of memory) as the connection's last words. */
static void conn_send_final(struct conn *c, char *msg, size_t len)
{
    c->out_paused = false; /* nothing more is read or answered */
    c->in.off = c->in.len = 0;
    free(c->parser);
    c->parser = NULL;
    if (!msg || buf_append(&c->out, msg, len) < 0) {
        free(msg);
        conn_close(c);
        return;
    }
    free(msg);
    set_state(c, CONN_ANSWER);
    answer_flush(c);
}

static void answer_flush(struct conn *c)
{
    if (buf_flush(&c->out, c->cfd) < 0) {
        conn_close(c);
        return;
    }
    if (buf_pending(&c->out)) {
        client_write(c, true);
        return;
    }
    client_write(c, false);
    if (c->state == CONN_ANSWER) {
        /* Shut our side and read what the client still sends, so closing does not reset the
         * connection before the client has read the answer. */
        shutdown(c->cfd, SHUT_WR);
        set_state(c, CONN_LINGER);
        client_read(c, true);
    }
}

/* ---- 3b. hold: admitted under the limits (hold.h), queued oldest first ---- */

/*
 * Counts c as held, within the service's and the resolver's limits on held connections and
 * held bytes (the bytes it buffered so far are reserved): c->held. At a limit c is answered
 * 503 (closed on other protocols) instead.
 */
static void conn_admit(struct conn *c, const struct route_service *r)
{
    size_t need = buf_pending(&c->in);
    const char *full = hold_admit(c->svc, r, c->w->dp, need);
    if (full) {
        conn_answer_error(c, 503, "overloaded", full, OUTCOME_REJECTED);
        return;
    }
    c->held_bytes += need;
    c->held = true;
    if (!c->held_ns)
        c->held_ns = clock_mono_ns();
}

/* Reserves up to `want` more held bytes for c (hold_reserve), added to c->held_bytes. */
static size_t conn_reserve(struct conn *c, size_t want, bool all)
{
    size_t got = hold_reserve(c->svc, conn_route(c), c->w->dp, want, all);
    c->held_bytes += got;
    return got;
}

/* Gives back reserved bytes that were not used. */
static void conn_release(struct conn *c, size_t n)
{
    hold_give_back(c->svc, c->w->dp, 0, n);
    c->held_bytes -= n;
}

/* The connection leaves its service's hold queue (and stops waiting for a pacing slot). */
static void leave_queue(struct conn *c)
{
    hold_dequeue(&conn_sw(c)->held, &c->hold);
    if (c->pace_waiting) {
        c->pace_waiting = false;
        atomic_fetch_sub(&c->svc->pace_waiting, 1);
    }
}

/* The connection stops being held; `observe` counts the time it was in the hold duration
 * histogram (everything but a data-path probe, which is never counted as held). */
static void leave_hold(struct conn *c, bool observe)
{
    leave_queue(c);
    if (!c->held)
        return;
    hold_give_back(c->svc, c->w->dp, 1, c->held_bytes);
    c->held_bytes = 0;
    c->held = false;
    struct svc_hists *hists = observe ? svc_state_hists(c->svc) : NULL;
    if (hists)
        hist_observe_ns(&hists->hold_seconds, clock_mono_ns() - c->held_ns);
}

/* The connection stops being held (forwarded, cancelled, timed out, answered). */
static void unhold(struct conn *c)
{
    leave_hold(c, true);
}

static void conn_hold(struct conn *c)
{
    conn_hold_queue(c, true);
}

/*
 * Holds c: admitted under the limits (when not held yet) and queued by arrival. With `wake`
 * (no ready endpoint) the service is woken, and c goes at once if it became ready meanwhile;
 * without (a connection waiting for a pacing slot of a ready service) neither. May answer and
 * close c.
 */
static void conn_hold_queue(struct conn *c, bool wake)
{
    const struct route_service *r = conn_route(c);
    struct dataplane *dp = c->w->dp;
    if (!r) {
        conn_answer_error(c, 503, "service unavailable", "service was removed", OUTCOME_REJECTED);
        return;
    }
    note_first_bytes(c, c->in.data + c->in.off, buf_pending(&c->in));
    if (!c->held) {
        conn_admit(c, r);
        if (!c->held)
            return;
        const struct route_port *p = conn_port(c);
        log_debug("held", "service=%s port=%s endpoints=%zu", c->svc->key, p ? p->name : NULL,
                  p ? p->n_endpoints : 0);
    }
    free(c->head); /* the head is decided; only framing is still validated */
    c->head = NULL;
    /* FIFO by arrival: a connection coming back after failed connects goes before any that
     * arrived after it. */
    hold_enqueue(&conn_sw(c)->held, &c->hold);
    set_state(c, CONN_HELD);
    /* Bytes that came in the same read as the head (a body, pipelined requests) are validated
     * now, not at a next read that may never come, and before waking anything: bad chunking
     * sent with its head gets its 400 instead of a wake and a delivery after it. This may
     * answer and close c. */
    if (c->parser && c->parse_off < buf_pending(&c->in)) {
        parse_more(c);
        if (moved_on(c, CONN_HELD))
            return;
    }
    if (!c->client_eof) {
        if (buf_pending(&c->in) >= in_limit(c))
            client_watch_close_only(c);
        else
            client_read(c, true);
    }
    if (!wake)
        return;
    int64_t zero = 0;
    atomic_compare_exchange_strong(&c->svc->wake_started_ns, &zero, (int64_t)clock_mono_ns());
    if (wakeq_push_wake(&dp->wakeq, c->svc))
        counter_add(&c->svc->wakes, 1);
    /* The service may have become ready while this connection was parsed. */
    if (conn_ready(c))
        conn_dispatch(c);
}

/*
 * A connection waiting for a backend with nothing written to it: its HTTP/1 bytes are
 * validated as they come, like those of every held request, whether it was held after its
 * head was parsed or taken as ready at accept and held after its connect failed. TLS and h2c
 * (found from the first bytes) and what follows an Upgrade are not HTTP/1 and stay unparsed.
 * This may answer and close c.
 */
static void validate_more(struct conn *c)
{
    if (c->raw || c->proto != PROTO_HTTP)
        return;
    if (!c->parser) {
        if (buf_pending(&c->in) == 0 || head_maybe_h2_preface(in_ptr(c), buf_pending(&c->in)))
            return; /* nothing yet, or the rest of a possible HTTP/2 preface to wait for */
        if (head_sniff_raw(in_ptr(c), buf_pending(&c->in))) {
            c->raw = true;
            c->http1 = false;
            c->sniffed = true;
            return;
        }
        c->http1 = true;
        c->sniffed = true;
    }
    parse_more(c);
}

/* Adds svc (one reference) to a worker's list of services (w->dispatch, w->pace_wait) unless
 * *listed says it is there. Out of memory: logged; its held connections then wait for the next
 * snapshot, slot or their hold timeout. */
static void svc_list_add(struct worker *w, struct svc_state ***list, size_t *n, size_t *cap,
                         bool *listed, struct svc_state *svc)
{
    if (*listed)
        return;
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        struct svc_state **grown = realloc(*list, ncap * sizeof(*grown));
        if (!grown) {
            log_error("out of memory queueing held connections for dispatch; they wait for "
                      "the next snapshot, pacing slot or their hold timeout",
                      "worker=%d service=%s", w->id, svc->key);
            return;
        }
        *list = grown;
        *cap = ncap;
    }
    (*list)[(*n)++] = svc_state_ref(svc);
    *listed = true;
}

/* svc's held connections are looked at by the next conn_dispatch_held. */
static void dispatch_list(struct worker *w, struct svc_state *svc)
{
    svc_list_add(w, &w->dispatch, &w->n_dispatch, &w->cap_dispatch,
                 &svc->workers[w->id].dispatch_listed, svc);
}

void conn_snapshot_applied(struct worker *w, const struct route_change *changes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* A service that disappeared: its held connections are answered. */
        if (changes[i].was && !changes[i].was->svc->workers[w->id].route) {
            struct svc_worker *sw = &changes[i].was->svc->workers[w->id];
            struct hold_entry *e;
            while ((e = TAILQ_FIRST(&sw->held)))
                conn_answer_error(conn_of(e), 503, "service unavailable", "service was removed",
                                  OUTCOME_REJECTED);
        }
        /* A service whose route changed: endpoints that left it start a new pacing window
         * if they come back, and its held connections may be ready now (nothing else makes
         * a queued connection ready). */
        struct svc_state *svc = changes[i].is ? changes[i].is->svc : NULL;
        if (!svc)
            continue;
        pick_pace_forget(&svc->workers[w->id], changes[i].is);
        if (!TAILQ_EMPTY(&svc->workers[w->id].held))
            dispatch_list(w, svc);
    }
    conn_dispatch_held(w);
}

/* conn_dispatch_held runs at the next loop turn. A zero timeout, not event_active: active
 * events run in this same loop turn, a timeout only after the next poll for I/O. */
static void dispatch_next_turn(struct worker *w)
{
    static const struct timeval next_turn = {0, 0};
    event_add(w->dispatch_ev, &next_turn);
}

void conn_dispatch_held(struct worker *w)
{
    /* Every held connection whose service port has ready endpoints goes, oldest first, at
     * most DISPATCH_BATCH per loop turn: the first ones' requests are written while the rest
     * are still being connected (9,000 connects in one go would delay every first byte by
     * the time of all of them). A connection that goes back to the queue (its connect failed
     * at once and the port has no endpoint left) is not ready any more, so it is not visited
     * twice in vain. Only services whose route changed are visited (w->dispatch). */
    size_t budget = DISPATCH_BATCH;
    size_t done = 0;
    for (; done < w->n_dispatch; done++) {
        struct svc_worker *sw = &w->dispatch[done]->workers[w->id];
        struct hold_entry *e = TAILQ_FIRST(&sw->held);
        while (e) {
            struct hold_entry *next = TAILQ_NEXT(e, link);
            struct conn *c = conn_of(e);
            if (conn_ready(c)) {
                if (budget == 0) {
                    dispatch_next_turn(w);
                    goto out;
                }
                conn_dispatch(c);
                if (c->pace_waiting)
                    break; /* no pacing slot: the rest wait behind it, in order */
                budget--;
            }
            e = next;
        }
    }
out:
    if (!done)
        return;
    for (size_t i = 0; i < done; i++) {
        w->dispatch[i]->workers[w->id].dispatch_listed = false;
        svc_state_unref(w->dispatch[i]);
    }
    memmove(w->dispatch, w->dispatch + done, (w->n_dispatch - done) * sizeof(*w->dispatch));
    w->n_dispatch -= done;
}

/* ---- 4. connect: pick an endpoint (pick.h), back off when every one failed ---- */

static void conn_dispatch(struct conn *c)
{
    const struct route_service *r = conn_route(c);
    if (!conn_ready(c)) {
        conn_hold(c);
        return;
    }
    if (c->deadline_ns && clock_mono_ns() >= c->deadline_ns) {
        conn_answer_error(c, 504, "timeout", r->reason ? r->reason : "no ready backend in time",
                          OUTCOME_TIMEOUT);
        return;
    }
    const struct addr *a = pick_endpoint(conn_sw(c), conn_port(c), c->failed, c->n_failed);
    if (!a) {
        /* Every endpoint failed for this connection: wait, then try them all again, and tell
         * the control plane (a target that went away while its endpoints were still listed is
         * woken; a wake of a running target does nothing). */
        if (wakeq_push_wake(&c->w->dp->wakeq, c->svc))
            counter_add(&c->svc->wakes, 1);
        c->n_failed = 0;
        leave_queue(c);
        c->backoff_ms = pick_backoff_next(c->backoff_ms);
        set_state(c, CONN_BACKOFF);
        return;
    }
    if (pace_wait(c, a))
        return;
    leave_queue(c);
    c->backend = *a;
    if (c->held)
        log_debug("held connection goes to a backend", "service=%s backend=%s", c->svc->key,
                  a->text);
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        /* Out of descriptors is ours, not the backend's: back off without blaming it. */
        c->backoff_ms = pick_backoff_next(c->backoff_ms);
        set_state(c, CONN_BACKOFF);
        return;
    }
    c->bfd = fd;
    event_assign(&c->brev, c->w->base, fd, EV_READ | EV_PERSIST, on_backend_read, c);
    event_assign(&c->bwev, c->w->base, fd, EV_WRITE | EV_PERSIST, on_backend_write, c);
    set_state(c, CONN_CONNECTING);
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
        connect_failed(c, errno);
        return;
    }
    backend_write(c, true);
}

/* ---- 4a. pacing: released held connections go through a window per endpoint (pace.h) ---- */

/*
 * With --pace-held, a held connection that is about to connect to a takes a slot of a's
 * pacing window (c->paced). When the window is full it waits in its service's hold queue
 * instead (c->pace_waiting: still held, its place by arrival kept, its hold deadline still
 * running) until a slot frees (pace_release) or the window grows (conn_pace_stalled). A
 * connection that was never held goes straight, unless held ones of its service wait before
 * it on this worker: then it is held and waits behind them, so nothing jumps the queue.
 * Returns true when c waits (or was answered: the hold limits were full).
 */
static bool pace_wait(struct conn *c, const struct addr *a)
{
    struct worker *w = c->w;
    if (!w->dp->limits.pace_held)
        return false;
    struct svc_worker *sw = conn_sw(c);
    const struct hold_entry *first = TAILQ_FIRST(&sw->held);
    bool behind = first && first != &c->hold && first->arrived_ns <= c->hold.arrived_ns;
    if (!c->held && !behind)
        return false;
    uint64_t now = clock_mono_ns();
    struct pace_window *p = pick_pace(sw, a, pace_initial(w->dp->nworkers), now);
    if (!p)
        return false; /* out of memory: not paced */
    if (!behind && pace_take(p, now)) {
        c->paced = true;
        c->paced_ns = now;
        c->pace_slow = false;
        return false;
    }
    /* Looked at again when the window would grow by itself. */
    svc_list_add(w, &w->pace_wait, &w->n_pace_wait, &w->cap_pace_wait, &sw->pace_listed, c->svc);
    if (!event_pending(w->pace_ev, EV_TIMEOUT, NULL)) {
        /* (A window past its stall time with connects pending does not grow: look again
         * later, not at once.) */
        uint64_t d =
            pace_stall_at(p) > now ? pace_stall_at(p) - now : (uint64_t)PACE_STALL_MS * 1000000ull;
        struct timeval tv = {.tv_sec = (time_t)(d / 1000000000ull),
                             .tv_usec = (suseconds_t)((d % 1000000000ull) / 1000)};
        event_add(w->pace_ev, &tv);
    }
    enum conn_state was = c->state;
    bool validate = false;
    if (!c->held && c->parse_if_held) {
        /* Taken as ready at accept: while it waits its HTTP/1 request is validated, as a held
         * one's is. */
        c->parse_if_held = false;
        c->raw = false;
        validate = true;
    }
    if (!c->pace_waiting) {
        c->pace_waiting = true;
        atomic_fetch_add(&c->svc->pace_waiting, 1);
    }
    conn_hold_queue(c, false);
    if (c->closing || (c->state != CONN_HELD && c->state != was))
        return true;
    if (validate)
        validate_more(c);
    return true;
}

/* c gives back its pacing slot: PACE_ANSWERED by the backend (its first byte; a tcp port's
 * connect), PACE_LOST (its connect timed out) or PACE_GONE. Held connections of its service
 * waiting on this worker may go now. */
static void pace_release(struct conn *c, enum pace_end how)
{
    if (!c->paced)
        return;
    c->paced = false;
    struct svc_worker *sw = conn_sw(c);
    struct pace_window *p = pick_pace_find(sw, &c->backend);
    if (p)
        pace_finish(p, !c->bound, how, clock_mono_ns());
    if (!TAILQ_EMPTY(&sw->held)) {
        dispatch_list(c->w, c->svc);
        dispatch_next_turn(c->w);
    }
}

void conn_pace_stalled(struct worker *w)
{
    for (size_t i = 0; i < w->n_pace_wait; i++) {
        struct svc_state *svc = w->pace_wait[i];
        svc->workers[w->id].pace_listed = false;
        if (!TAILQ_EMPTY(&svc->workers[w->id].held))
            dispatch_list(w, svc);
        svc_state_unref(svc);
    }
    w->n_pace_wait = 0;
    conn_dispatch_held(w);
}

/* A connect attempt failed with nothing written: try another endpoint, or wait and retry. */
static void connect_failed(struct conn *c, int err)
{
    log_debug("backend connect failed", "service=%s backend=%s error=%s", c->svc->key,
              c->backend.text, strerror(err));
    pace_release(c, err == ETIMEDOUT ? PACE_LOST : PACE_GONE);
    close_backend(c);
    counter_add(&c->svc->connect_retries, 1);
    wakeq_push_failure(&c->w->dp->wakeq, c->svc, &c->backend);
    if (c->n_failed < MAX_FAILED)
        c->failed[c->n_failed++] = c->backend;
    const struct route_service *r = conn_route(c);
    if (!c->deadline_ns)
        c->deadline_ns =
            c->hold.arrived_ns + (uint64_t)(r ? r->hold_timeout_s : 600) * 1000000000ull;
    if (!c->held && c->to_backend == 0) {
        /* Taken as ready at accept, it now waits for a backend like a held connection: it is
         * counted against the hold limits, and its HTTP/1 request is validated. */
        if (!r) {
            conn_answer_error(c, 503, "service unavailable", "service was removed",
                              OUTCOME_REJECTED);
            return;
        }
        conn_admit(c, r);
        if (!c->held)
            return;
        if (c->parse_if_held) {
            enum conn_state was = c->state;
            c->parse_if_held = false;
            c->raw = false;
            validate_more(c);
            if (moved_on(c, was))
                return; /* refused (400): answered, not connected again */
        }
    }
    conn_dispatch(c);
}

static void close_backend(struct conn *c)
{
    pace_release(c, PACE_GONE);
    if (c->bfd < 0)
        return;
    event_del(&c->brev);
    event_del(&c->bwev);
    c->brev_on = c->bwev_on = false;
    close(c->bfd);
    c->bfd = -1;
    if (c->bound) {
        pick_load_add(conn_sw(c), &c->backend, -1);
        c->bound = false;
    }
}

static void observe_cold_start(struct conn *c)
{
    if (!c->held_ns)
        return;
    uint64_t now = clock_mono_ns();
    int64_t started = atomic_exchange(&c->svc->wake_started_ns, 0);
    int64_t ready = atomic_exchange(&c->svc->ready_since_ns, 0);
    struct svc_hists *hists =
        started > 0 || (ready > 0 && now >= (uint64_t)ready) ? svc_state_hists(c->svc) : NULL;
    if (hists && started > 0)
        hist_observe_ns(&hists->cold_start_seconds, now - (uint64_t)started);
    if (hists && ready > 0 && now >= (uint64_t)ready)
        hist_observe_ns(&hists->ready_to_first_byte_seconds, now - (uint64_t)ready);
    if (started > 0)
        atomic_store(&c->svc->first_byte_ns, (int64_t)now);
    if (started > 0)
        log_info("cold start: first held byte written",
                 "service=%s backend=%s cold_start_ms=%f "
                 "ready_to_first_byte_ms=%f",
                 c->svc->key, c->backend.text, (double)(now - (uint64_t)started) / 1e6,
                 ready > 0 ? (double)(now - (uint64_t)ready) / 1e6 : -1.0);
}

static void connected(struct conn *c)
{
    int one = 1;
    setsockopt(c->bfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(c->bfd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    c->bound = true;
    pick_load_add(conn_sw(c), &c->backend, 1);
    if (c->paced) {
        struct pace_window *p = pick_pace_find(conn_sw(c), &c->backend);
        if (p)
            pace_connected(p);
        if (c->proto == PROTO_TCP) /* the server may never speak first: connected is answered */
            pace_release(c, PACE_ANSWERED);
    }
    if (!c->probe_check) /* else once its first bytes are known not to be a data-path probe */
        count(c, OUTCOME_FORWARDED);
    unhold(c);
    free(c->parser);
    c->parser = NULL;
    free(c->head);
    c->head = NULL;
    c->backoff_ms = 0;
    set_state(c, CONN_RELAY);
    if (buf_pending(&c->in)) {
        size_t before = buf_pending(&c->in);
        note_first_bytes(c, c->in.data + c->in.off, before);
        if (buf_flush(&c->in, c->bfd) < 0) {
            connect_failed(c, errno);
            return;
        }
        c->to_backend += before - buf_pending(&c->in);
        observe_cold_start(c);
    }
    /* Probe answers still unsent go first: backend bytes wait until they are written. */
    backend_read(c, !buf_pending(&c->out));
    if (buf_pending(&c->out))
        client_write(c, true);
    if (buf_pending(&c->in)) {
        backend_write(c, true);
        client_read(c, false);
    } else {
        backend_write(c, false);
        if (c->client_eof)
            shutdown(c->bfd, SHUT_WR);
        else
            client_read(c, true);
    }
}

/* ---- 5. relay ---- */

/*
 * The first bytes p[0, n) of a connection taken as ready at accept on an HTTP port (in c->in
 * when `buffered`, else still only in the worker's scratch buffer). When they are not a
 * data-path probe the connection goes on as it was (counted forwarded once bound); when they
 * are, it is switched to answering it (moved_on).
 */
static void check_first_bytes(struct conn *c, const char *p, size_t n, bool buffered)
{
    c->probe_check = false;
    /* A backend that spoke or hung up first has had its say on this connection: relayed. */
    if (c->from_backend > 0 || c->client_shut || !head_has_probe_field(p, n)) {
        if (c->bound)
            count(c, OUTCOME_FORWARDED);
        return;
    }
    if (!buffered && buf_append(&c->in, p, n) < 0) {
        conn_close(c);
        return;
    }
    answer_probe_instead_of_relay(c);
}

/*
 * A connection taken as ready at accept sent a data-path probe: it must not reach the backend,
 * and is answered like on every other path. The backend connection (nothing was written to
 * it) is dropped, the connection leaves any hold uncounted (a connect that failed at once may
 * have held it), and its head is parsed from the start: decide_after_head answers it, or 400
 * for an invalid nonce. The probe's bytes are in c->in.
 */
static void answer_probe_instead_of_relay(struct conn *c)
{
    log_debug("data-path probe on a connection relayed unparsed: not forwarded", "service=%s",
              c->svc ? c->svc->key : NULL);
    close_backend(c);
    if (c->svc)
        leave_hold(c, false);
    c->raw = false;
    c->parse_if_held = false;
    c->http1 = true;
    c->sniffed = true;
    set_state(c, CONN_HEAD);
    client_read(c, true);
    parse_more(c);
}

static void relay_from_client(struct conn *c)
{
    struct worker *w = c->w;
    ssize_t n = recv(c->cfd, w->scratch, w->scratch_len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        conn_close(c);
        return;
    }
    if (n == 0) {
        c->client_eof = true;
        client_read(c, false);
        if (!buf_pending(&c->in))
            shutdown(c->bfd, SHUT_WR);
        relay_done_check(c);
        return;
    }
    if (c->probe_check) {
        check_first_bytes(c, w->scratch, (size_t)n, false);
        if (moved_on(c, CONN_RELAY))
            return;
    }
    if (c->to_backend == 0)
        note_first_bytes(c, w->scratch, (size_t)n);
    c->to_backend += (uint64_t)n;
    ssize_t wr = send(c->bfd, w->scratch, (size_t)n, MSG_NOSIGNAL);
    if (wr < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            backend_ended(c, true);
            return;
        }
        wr = 0;
    }
    if (wr < n) {
        if (buf_append(&c->in, w->scratch + wr, (size_t)(n - wr)) < 0) {
            conn_close(c);
            return;
        }
        client_read(c, false);
        backend_write(c, true);
    }
    if (w->dp->limits.idle_timeout_s)
        conn_arm_timer(c);
}

static void relay_from_backend(struct conn *c)
{
    struct worker *w = c->w;
    ssize_t n = recv(c->bfd, w->scratch, w->scratch_len, 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        backend_ended(c, true);
        return;
    }
    if (n == 0) {
        backend_ended(c, false);
        return;
    }
    c->from_backend += (uint64_t)n;
    if (c->paced)
        pace_release(c, PACE_ANSWERED);
    ssize_t wr = buf_pending(&c->out) ? 0 : send(c->cfd, w->scratch, (size_t)n, MSG_NOSIGNAL);
    if (wr < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            conn_close(c);
            return;
        }
        wr = 0;
    }
    if (wr < n) {
        if (buf_append(&c->out, w->scratch + wr, (size_t)(n - wr)) < 0) {
            conn_close(c);
            return;
        }
        backend_read(c, false);
        client_write(c, true);
    }
    if (w->dp->limits.idle_timeout_s)
        conn_arm_timer(c);
}

/* The backend ended (EOF or error). 502 if it never answered what we sent on HTTP/1. */
static void backend_ended(struct conn *c, bool error)
{
    pace_release(c, PACE_GONE);
    if (c->http1 && c->from_backend == 0 && c->to_backend > 0 && !buf_pending(&c->out)) {
        conn_answer_error(c, 502, "bad gateway", "backend closed the connection before answering",
                          OUTCOME_UPSTREAM_ERROR);
        return;
    }
    if (error) {
        conn_close(c);
        return;
    }
    c->backend_eof = true;
    backend_read(c, false);
    if (!buf_pending(&c->out)) {
        shutdown(c->cfd, SHUT_WR);
        c->client_shut = true;
    }
    relay_done_check(c);
}

static void relay_done_check(struct conn *c)
{
    if (c->client_eof && c->backend_eof && !buf_pending(&c->in) && !buf_pending(&c->out))
        conn_close(c);
}

static void on_client_write(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->closing)
        return;
    if (c->state != CONN_RELAY) {
        size_t unsent = buf_pending(&c->out);
        answer_flush(c);
        if (c->closing || !c->out_paused || c->state != CONN_HEAD)
            return;
        if (buf_pending(&c->out) < OUT_LIMIT) {
            /* The client read its answers: answer the requests it sent meanwhile, read on. */
            c->out_paused = false;
            client_read(c, true);
            parse_more(c);
        } else if (buf_pending(&c->out) < unsent) {
            /* Still paused, but the client read: its wait starts again. */
            paused_client_read(c);
            conn_arm_timer(c);
        }
        return;
    }
    if (buf_flush(&c->out, c->cfd) < 0) {
        conn_close(c);
        return;
    }
    if (buf_pending(&c->out))
        return;
    client_write(c, false);
    if (c->backend_eof) {
        shutdown(c->cfd, SHUT_WR);
        c->client_shut = true;
        relay_done_check(c);
    } else {
        backend_read(c, true);
    }
}

static void on_backend_read(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (!c->closing)
        relay_from_backend(c);
}

static void on_backend_write(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->closing)
        return;
    if (c->state == CONN_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->bfd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            connect_failed(c, err);
            return;
        }
        backend_write(c, false);
        connected(c);
        return;
    }
    size_t before = buf_pending(&c->in);
    if (buf_flush(&c->in, c->bfd) < 0) {
        backend_ended(c, true);
        return;
    }
    if (before && c->to_backend == 0)
        observe_cold_start(c);
    c->to_backend += before - buf_pending(&c->in);
    if (buf_pending(&c->in))
        return;
    backend_write(c, false);
    if (c->client_eof) {
        shutdown(c->bfd, SHUT_WR);
        relay_done_check(c);
    } else {
        client_read(c, true);
    }
}

/* ---- deadlines: what happens when the timer fires, per state ---- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    if (c->closing)
        return;
    const struct route_service *r = conn_route(c);
    switch (c->state) {
    case CONN_HEAD:
        if (c->out_paused && paused_client_read(c)) {
            conn_arm_timer(c); /* not a slow head: a client still reading its answers */
            return;
        }
        if (!c->seen_request || buf_pending(&c->in) > 0)
            conn_answer_error(c, 408, "request timeout", "no complete request head in time",
                              OUTCOME_BAD_REQUEST);
        else
            conn_close(c); /* an idle keep-alive connection after probe answers */
        return;
    case CONN_HELD:
    case CONN_BACKOFF:
    case CONN_CONNECTING:
        if (c->deadline_ns && clock_mono_ns() >= c->deadline_ns) {
            char reason[300];
            snprintf(reason, sizeof(reason), "%s",
                     r && r->reason ? r->reason : "no ready backend within the hold timeout");
            log_info("held request timed out", "service=%s reason=%s", c->svc->key, reason);
            conn_answer_error(c, 504, "timeout", reason, OUTCOME_TIMEOUT);
            return;
        }
        if (c->state == CONN_CONNECTING && c->paced && !c->pace_slow) {
            /* The backlog dropped its SYN: the window shrinks; the kernel retransmits it. */
            c->pace_slow = true;
            struct pace_window *p = pick_pace_find(conn_sw(c), &c->backend);
            if (p)
                pace_lost(p, clock_mono_ns());
            conn_arm_timer(c); /* the connect timeout runs from now */
            return;
        }
        if (c->state == CONN_CONNECTING) {
            connect_failed(c, ETIMEDOUT);
            return;
        }
        if (c->state == CONN_BACKOFF) {
            conn_dispatch(c);
            return;
        }
        /* Held, and the timer fired a little before the deadline (libevent schedules from its
         * cached clock, in whole microseconds): watch the deadline again, or the connection
         * would never get its 504. */
        conn_arm_timer(c);
        return;
    case CONN_RELAY:
        log_debug("relay idle timeout", "service=%s", c->svc ? c->svc->key : NULL);
        conn_close(c);
        return;
    case CONN_ANSWER:
    case CONN_LINGER:
        conn_close(c);
        return;
    }
}

/* ---- 6. close: mark now, free in one place once the callback has returned ---- */

/*
 * Closes c: it leaves its queues and gauges and gets no more events at once, and is freed by
 * free_closed (from conn_reap) when the loop turn's handlers have returned. Every step may
 * therefore close the connection it works on; its callers stop on moved_on, and nothing is
 * ever used after it was freed. The sockets stay open until then, so their
 * numbers cannot be reused by another connection under a caller still holding c.
 */
static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    if (c->svc) {
        pace_release(c, PACE_GONE);
        unhold(c);
    }
    if (c->bound) {
        pick_load_add(conn_sw(c), &c->backend, -1);
        c->bound = false;
    }
    event_del(&c->crev);
    event_del(&c->cwev);
    event_del(&c->timer);
    if (c->bfd >= 0) {
        event_del(&c->brev);
        event_del(&c->bwev);
    }
    c->crev_on = c->cwev_on = c->brev_on = c->bwev_on = false;
    TAILQ_INSERT_TAIL(&c->w->closing, c, close_link);
    event_active(c->w->reap_ev, 0, 0);
}

/* Frees the connections marked closed: the one place a connection is freed. Returns how
 * many. */
static size_t free_closed(struct worker *w)
{
    size_t n = 0;
    struct conn *c;
    while ((c = TAILQ_FIRST(&w->closing))) {
        TAILQ_REMOVE(&w->closing, c, close_link);
        if (c->bfd >= 0)
            close(c->bfd);
        close(c->cfd);
        buf_free(&c->in);
        buf_free(&c->out);
        free(c->parser);
        free(c->head);
        free(c->page_msg);
        if (c->svc)
            svc_state_unref(c->svc);
        TAILQ_REMOVE(&w->conns, c, all_link);
        free(c);
        w->nconns--;
        atomic_fetch_sub(&w->dp->open_conns, 1);
        n++;
    }
    return n;
}

void conn_reap(struct worker *w)
{
    if (free_closed(w))
        worker_conn_closed(w);
}

void conn_close_all(struct worker *w)
{
    struct conn *c;
    TAILQ_FOREACH(c, &w->conns, all_link)
    conn_close(c);
    free_closed(w);
}
