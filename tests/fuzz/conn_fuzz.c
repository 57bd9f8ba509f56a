/*
 * conn_fuzz: the request-head path of resolver/conn.c as a worker drives it: split reads,
 * pipelining, probe answers, holding, Host routing on the shared port, holdfast's own error
 * answers, and (when the service becomes ready mid-stream) connecting and relaying to a backend.
 *
 * Each run builds a data plane with one worker whose thread is never started (dataplane_new
 * does not start threads): this thread runs the worker's event_base with EVLOOP_NONBLOCK. It
 * publishes a route snapshot with one HTTP service, default/web, that has probeResponse rules
 * and no ready endpoint, plus a shared Host-routed listener; applies it; hands one end of a
 * socketpair to conn_accept on one of the two listeners; and writes the input to the other end
 * in pieces, running the loop between pieces. At the end the client half-closes or closes, the
 * loop runs until the connection is gone, and everything is freed.
 *
 * Input: 4 header bytes, then the bytes the client sends.
 *   byte 0, flags:
 *     0x01  connect to the shared port (Host routing) instead of the service's port
 *     0x02  read what holdfast answers after every piece (else only at the end)
 *     0x04  half-close (shutdown SHUT_WR) after the last piece, and read on
 *     0x08  close right after writing the last piece, before holdfast has read it
 *     0x10  the service becomes ready mid-stream: its endpoint is a loopback listener of this
 *           process (the backend), which reads and then answers or closes (0x80)
 *     0x20  the service is removed from the routes mid-stream
 *     0x40  the service's hold queue is full (maxHeldConnections 0)
 *     0x80  the backend answers "200 ok" (else it closes without answering: 502)
 *   byte 1: piece sizes (bits 0-1: 1 to 16 bytes, 1 byte, 1 to 512 bytes, everything at once)
 *           and, bits 2-7, after which piece the mid-stream change happens; 63 with 0x10 (and
 *           not 0x20): the service is ready from the start, so the connection is taken as
 *           ready at accept (connected at once, relayed unparsed, its first bytes looked at
 *           for a data-path probe)
 *   bytes 2-3: seed of the piece sizes
 *
 * Checks: what holdfast writes to the client is a well-formed stream of HTTP/1.1 responses
 * (parsed with llhttp as responses; only the HEAD rule answers HEAD and it answers 204, so no
 * response's framing depends on its request); the connection is gone once the client has
 * closed and the backend let go.
 */
#include <errno.h>
#include <event2/event.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fuzz_util.h"
#include "resolver/conn.h"
#include "resolver/route.h"
#include "resolver/worker.h"

#define F_SHARED 0x01
#define F_READ_EACH 0x02
#define F_HALF_CLOSE 0x04
#define F_CLOSE_EARLY 0x08
#define F_READY 0x10
#define F_REMOVED 0x20
#define F_FULL 0x40
#define F_BACKEND_ANSWERS 0x80

#define MAX_BACKENDS 8
#define END_TURNS 64
#define READY_AT_ACCEPT 63 /* change_at: ready from the start (with F_READY) */

static const char rules_json[] =
    "[{\"method\":\"GET\",\"path\":{\"type\":\"Exact\",\"value\":\"/healthz\"},"
    "  \"response\":{\"status\":200,\"body\":\"{\\\"status\\\":\\\"ok\\\"}\"}},"
    " {\"method\":\"HEAD\",\"path\":{\"type\":\"Exact\",\"value\":\"/ready\"},"
    "  \"response\":{\"status\":204}},"
    " {\"method\":\"GET\",\"path\":{\"type\":\"PathPrefix\",\"value\":\"/probe\"},"
    "  \"headers\":[{\"name\":\"User-Agent\",\"value\":\"^kube-probe/\","
    "               \"type\":\"RegularExpression\"}],"
    "  \"response\":{\"status\":503,\"body\":\"{}\"}},"
    " {\"method\":\"POST\",\"path\":{\"type\":\"Exact\",\"value\":\"/check\"},"
    "  \"queryParams\":[{\"name\":\"token\",\"value\":\"abc\"}],"
    "  \"response\":{\"status\":401,\"body\":\"denied\"}},"
    " {\"method\":\"GET\",\"path\":{\"type\":\"RegularExpression\",\"value\":\"^/status/[a-z]+$\"},"
    "  \"response\":{\"status\":404}}]";

static struct route_probes *probes; /* shared by every run's snapshots */
static int backend_listener = -1;   /* the "pod" the service becomes ready with */
static struct addr backend_addr;

struct run {
    struct dataplane *dp;
    struct worker *w;
    struct svc_state *svc;
    uint8_t flags;
    int client;     /* our end of the socketpair, -1 once closed */
    bool peer_gone; /* holdfast closed its end */
    int backends[MAX_BACKENDS];
    bool answered[MAX_BACKENDS];
    llhttp_t resp; /* what holdfast writes, parsed as responses */
    llhttp_settings_t resp_settings;
    bool resp_error;
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_logging();
    signal(SIGPIPE, SIG_IGN);
    cJSON *array = cJSON_Parse(rules_json);
    char err[512];
    struct probe_rules *rules = probe_rules_parse(array, "probeResponse", err, sizeof(err));
    cJSON_Delete(array);
    if (!rules)
        fuzz_fail("the target's own rules do not parse: %s", err);
    probes = route_probes_new(rules);

    backend_listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    if (backend_listener < 0 || bind(backend_listener, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        listen(backend_listener, 64) < 0 ||
        getsockname(backend_listener, (struct sockaddr *)&sin, &len) < 0)
        fuzz_fail("cannot open the loopback backend: %s", strerror(errno));
    addr_from_sockaddr((struct sockaddr *)&sin, len, &backend_addr);
    return 0;
}

/* A snapshot: default/web (unless `removed`), ready with the backend when `ready`. */
static void publish(struct run *r, bool ready, bool removed)
{
    struct route_snapshot *s = route_snapshot_derive(NULL);
    if (!s)
        abort();
    char err[64];
    if (!removed) {
        struct route_service *rs = route_service_new(svc_state_ref(r->svc), 1, 1);
        if (!rs)
            abort();
        rs->probes = route_probes_ref(probes);
        rs->hold_timeout_s = 600;
        rs->max_held_connections = (r->flags & F_FULL) ? 0 : 10000;
        rs->max_held_bytes = 1 << 20;
        rs->reason = strdup("FailedCreate: exceeded quota");
        rs->ports[0].name = strdup("http");
        rs->ports[0].protocol = PROTO_HTTP;
        rs->ports[0].number = 80;
        rs->ports[0].endpoints = calloc(1, sizeof(struct addr));
        if (!rs->reason || !rs->ports[0].name || !rs->ports[0].endpoints)
            abort();
        if (ready) {
            rs->ports[0].endpoints[0] = backend_addr;
            rs->ports[0].n_endpoints = 1;
        }
        struct addr laddr;
        addr_parse("127.0.0.1:1", &laddr, err, sizeof(err));
        route_service_add_listener(rs, 0, &laddr);
        if (route_snapshot_put(s, 0, rs) < 0)
            abort();
    }
    struct addr shared;
    addr_parse("127.0.0.1:2", &shared, err, sizeof(err));
    if (route_snapshot_add_shared(s, &shared) < 0)
        abort();
    route_table_publish(&r->dp->routes, s);
}

/* Accepts the worker's connections to the backend, reads them, answers or closes. */
static void serve_backend(struct run *r)
{
    for (int i = 0; i < 4; i++) {
        int fd = accept4(backend_listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            break;
        size_t k = 0;
        while (k < MAX_BACKENDS && r->backends[k] >= 0)
            k++;
        if (k == MAX_BACKENDS) {
            close(fd);
            continue;
        }
        r->backends[k] = fd;
        r->answered[k] = false;
    }
    for (size_t k = 0; k < MAX_BACKENDS; k++) {
        if (r->backends[k] < 0)
            continue;
        char buf[4096];
        ssize_t n = recv(r->backends[k], buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            close(r->backends[k]);
            r->backends[k] = -1;
            continue;
        }
        if (n > 0 && !r->answered[k]) {
            r->answered[k] = true;
            if (r->flags & F_BACKEND_ANSWERS) {
                static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                send(r->backends[k], ok, sizeof(ok) - 1, MSG_NOSIGNAL);
            } else {
                close(r->backends[k]);
                r->backends[k] = -1;
            }
        }
    }
}

static void close_backends(struct run *r)
{
    for (size_t k = 0; k < MAX_BACKENDS; k++) {
        if (r->backends[k] >= 0)
            close(r->backends[k]);
        r->backends[k] = -1;
    }
}

/* Reads and checks what holdfast wrote to the client. */
static void read_answers(struct run *r)
{
    for (int i = 0; i < 64 && r->client >= 0; i++) {
        char buf[8192];
        ssize_t n = recv(r->client, buf, sizeof(buf), MSG_DONTWAIT);
        if (n <= 0) {
            if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
                r->peer_gone = true;
            return;
        }
        if (r->resp_error)
            continue;
        llhttp_errno_t e = llhttp_execute(&r->resp, buf, (size_t)n);
        if (e != HPE_OK) {
            r->resp_error = true;
            fuzz_fail("holdfast wrote a malformed HTTP response: %s (%s)", llhttp_errno_name(e),
                      llhttp_get_error_reason(&r->resp));
        }
    }
}

/* One turn of the worker's loop, and of the backend's. */
static void turn(struct run *r)
{
    event_base_loop(r->w->base, EVLOOP_NONBLOCK);
    serve_backend(r);
    event_base_loop(r->w->base, EVLOOP_NONBLOCK);
}

static void send_piece(struct run *r, const uint8_t *p, size_t n)
{
    for (int tries = 0; n > 0 && tries < 8 && !r->peer_gone; tries++) {
        ssize_t w = send(r->client, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                r->peer_gone = true;
                return;
            }
            w = 0;
        }
        p += w;
        n -= (size_t)w;
        if (n) {
            /* holdfast stopped reading (a full hold buffer): let it answer, read, retry */
            turn(r);
            read_answers(r);
        }
    }
}

static uint32_t next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static size_t piece_size(uint8_t mode, uint32_t *seed, size_t left)
{
    size_t n;
    switch (mode & 3) {
    case 0:
        n = 1 + next_rand(seed) % 16;
        break;
    case 1:
        n = 1;
        break;
    case 2:
        n = 1 + next_rand(seed) % 512;
        break;
    default:
        n = left;
        break;
    }
    return n < left ? n : left;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    struct run r = {.flags = data[0], .client = -1};
    uint8_t mode = data[1];
    size_t change_at = (size_t)(data[1] >> 2);
    uint32_t seed = ((uint32_t)data[2] << 8 | data[3]) + 1;
    data += 4;
    size -= 4;
    for (size_t k = 0; k < MAX_BACKENDS; k++)
        r.backends[k] = -1;

    struct dp_limits limits;
    dp_limits_default(&limits);
    limits.max_head_bytes = 1024; /* small, so 431 and backpressure are within reach */
    limits.hold_buffer_bytes = 4096;
    r.dp = dataplane_new(1, &limits);
    if (!r.dp)
        abort();
    r.w = r.dp->workers[0];
    r.svc = svc_registry_get(&r.dp->registry, "default", "web");
    if (!r.svc)
        abort();
    bool ready_at_accept =
        (r.flags & (F_READY | F_REMOVED)) == F_READY && change_at == READY_AT_ACCEPT;
    publish(&r, ready_at_accept, false);
    event_base_loop(r.w->base, EVLOOP_NONBLOCK); /* the worker applies the snapshot */
    if (!r.w->snap)
        fuzz_fail("the worker did not apply the snapshot");

    llhttp_settings_init(&r.resp_settings);
    llhttp_init(&r.resp, HTTP_RESPONSE, &r.resp_settings);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    r.client = sv[1];
    const struct route_listener *l = (r.flags & F_SHARED)
                                         ? &r.w->snap->listeners[0]
                                         : &route_snapshot_slot(r.w->snap, 0)->listeners[0];
    conn_accept(r.w, sv[0], l);

    size_t piece = 0;
    bool changed = ready_at_accept;
    while (size > 0 && !r.peer_gone) {
        size_t n = piece_size(mode, &seed, size);
        send_piece(&r, data, n);
        data += n;
        size -= n;
        bool last = size == 0 || r.peer_gone;
        if (last && (r.flags & F_CLOSE_EARLY)) {
            close(r.client); /* the bytes and the close arrive together */
            r.client = -1;
            break;
        }
        turn(&r);
        if (r.flags & F_READ_EACH)
            read_answers(&r);
        if (!changed && piece++ == change_at && (r.flags & (F_READY | F_REMOVED))) {
            changed = true;
            publish(&r, (r.flags & F_READY) != 0, (r.flags & F_REMOVED) != 0);
            turn(&r);
        }
    }
    if (!changed && (r.flags & (F_READY | F_REMOVED))) {
        publish(&r, (r.flags & F_READY) != 0, (r.flags & F_REMOVED) != 0);
        turn(&r);
    }
    if (r.client >= 0 && (r.flags & F_HALF_CLOSE)) {
        shutdown(r.client, SHUT_WR);
        for (int i = 0; i < 4; i++) {
            turn(&r);
            read_answers(&r);
        }
    }
    for (int i = 0; i < 4 && r.client >= 0; i++) {
        turn(&r);
        read_answers(&r);
    }
    if (r.client >= 0)
        close(r.client);
    r.client = -1;

    /* The client is gone: the connection must go too (once the backend lets go). */
    for (int i = 0; i < END_TURNS && r.w->nconns > 0; i++) {
        turn(&r);
        if (i == END_TURNS / 2)
            close_backends(&r);
    }
    close_backends(&r);
    if (r.w->nconns > 0)
        conn_close_all(r.w); /* e.g. a connect in backoff: by design it outlives the client */

    svc_state_unref(r.svc);
    dataplane_free(r.dp);
    return 0;
}
