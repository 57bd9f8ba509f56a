/*
 * kube_http_fuzz: Kubernetes API answers as bytes on the wire, through the real HTTP client
 * (controller/http.c on libcurl) and kube.c: status lines and headers, chunked and cut-short
 * bodies, Status errors, and watch streams split into lines, including a last line without its
 * newline. kube_api_fuzz scripts the API at the level of http.h; this target covers what lies
 * under it.
 *
 * Each run starts one call of a kube client whose server is a loopback listener of this
 * process, on the same event_base: every connection it accepts gets the input's response
 * bytes, then its write side is shut and what the client sent is read until it closes.
 *
 * Input: byte 0 picks the call (0 get of a /scale, 1 watch, 2 list, 3 update with retries on
 * 409); byte 1 is how many watch events to take before cancelling the watch from its own
 * event callback (0: never), as informers do on an ERROR event, which is always cancelled;
 * the rest is the raw HTTP response, e.g. "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".
 *
 * Checks: the done callback runs exactly once (or never, after a cancel), the call finishes
 * within its deadline, and no sanitizer report.
 */
#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "controller/kube/kube.h"
#include "controller/kube/kubeconfig.h"
#include "controller/target.h"
#include "fuzz_util.h"

#define MAX_CONNS 8
#define RUN_DEADLINE_S 5

static const struct kube_resource deployments = {"apps", "v1", "deployments", true};
static const struct kube_resource elastiservices = {"elasti.truefoundry.com", "v1alpha1",
                                                    "elastiservices", true};

static char dir[PATH_MAX];
static char kubeconfig_path[PATH_MAX];
static int listener = -1;
static struct event_base *base;
static struct kubeconfig *kc;

struct server_conn {
    int fd;
    struct event *ev;
    size_t sent;
    bool shut;
};

struct run {
    const uint8_t *resp;
    size_t resp_len;
    struct event *accept_ev, *deadline_ev;
    struct server_conn conns[MAX_CONNS];
    size_t n_conns;
    struct kube_call *call;
    int dones;
    bool cancelled;
    bool timed_out;
    unsigned events, cancel_after;
};

static void cleanup(void)
{
    unlink(kubeconfig_path);
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_logging();
    signal(SIGPIPE, SIG_IGN);
    listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sin);
    if (listener < 0 || bind(listener, (struct sockaddr *)&sin, sizeof(sin)) < 0 ||
        listen(listener, 64) < 0 || getsockname(listener, (struct sockaddr *)&sin, &len) < 0)
        fuzz_fail("cannot open the loopback API server: %s", strerror(errno));

    char tmpl[] = "/tmp/holdfast-kube-http-fuzz.XXXXXX";
    if (!mkdtemp(tmpl))
        fuzz_fail("cannot make a temporary directory: %s", strerror(errno));
    snprintf(dir, sizeof(dir), "%s", tmpl);
    snprintf(kubeconfig_path, sizeof(kubeconfig_path), "%s/kubeconfig", dir);
    atexit(cleanup);
    FILE *f = fopen(kubeconfig_path, "w");
    if (!f)
        fuzz_fail("cannot write %s: %s", kubeconfig_path, strerror(errno));
    fprintf(f,
            "clusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:%u'}\n"
            "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n"
            "users:\n- name: u\n  user: {token: fuzz}\n",
            (unsigned)ntohs(sin.sin_port));
    fclose(f);
    char err[512];
    if (kubeconfig_load_file(kubeconfig_path, NULL, &kc, err, sizeof(err)) != 0)
        fuzz_fail("%s", err);
    base = event_base_new();
    if (!base)
        abort();
    return 0;
}

/* ---- the loopback API server ---- */

static void conn_close(struct server_conn *sc)
{
    if (sc->fd < 0)
        return;
    event_free(sc->ev);
    close(sc->fd);
    sc->fd = -1;
}

static void on_server_conn(evutil_socket_t fd, short what, void *arg)
{
    struct run *r = arg;
    struct server_conn *sc = NULL;
    for (size_t i = 0; i < r->n_conns; i++)
        if (r->conns[i].fd == fd)
            sc = &r->conns[i];
    if (!sc)
        return;
    while (!sc->shut) {
        ssize_t n = send(fd, r->resp + sc->sent, r->resp_len - sc->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return; /* EV_WRITE brings us back */
            conn_close(sc);
            return;
        }
        sc->sent += (size_t)n;
        if (sc->sent == r->resp_len) {
            shutdown(fd, SHUT_WR);
            sc->shut = true;
            event_del(sc->ev);
            event_assign(sc->ev, base, fd, EV_READ | EV_PERSIST, on_server_conn, r);
            event_add(sc->ev, NULL);
        }
    }
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
        conn_close(sc);
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    struct run *r = arg;
    int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (cfd < 0)
        return;
    if (r->n_conns == MAX_CONNS) {
        close(cfd);
        return;
    }
    struct server_conn *sc = &r->conns[r->n_conns++];
    sc->fd = cfd;
    sc->ev = event_new(base, cfd, EV_WRITE | EV_PERSIST, on_server_conn, r);
    if (!sc->ev)
        abort();
    if (r->resp_len == 0) {
        shutdown(cfd, SHUT_WR);
        sc->shut = true;
        event_assign(sc->ev, base, cfd, EV_READ | EV_PERSIST, on_server_conn, r);
    }
    event_add(sc->ev, NULL);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct run *r = arg;
    r->timed_out = true;
}

/* ---- the client side ---- */

static void on_done(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct run *r = arg;
    r->dones++;
    r->call = NULL;
    if (err && (!memchr(err->reason, '\0', sizeof(err->reason)) ||
                !memchr(err->message, '\0', sizeof(err->message))))
        fuzz_fail("a kube_error with unterminated text");
    struct target_scale scale;
    target_scale_parse(obj, &scale);
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(obj, "items"))
    {
        if (!cJSON_IsObject(item))
            break;
    }
}

static void on_event(const char *type, cJSON *object, void *arg)
{
    struct run *r = arg;
    r->events++;
    cJSON_Delete(object);
    if (!r->call)
        fuzz_fail("a watch event after the call ended");
    if (strcmp(type, "ERROR") == 0 || (r->cancel_after && r->events >= r->cancel_after)) {
        kube_call_cancel(r->call); /* as informer.c does on an ERROR event */
        r->call = NULL;
        r->cancelled = true;
    }
}

static int mutate(cJSON *obj, void *arg)
{
    cJSON_DeleteItemFromObjectCaseSensitive(obj, "status");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct run r = {.resp = data + 2, .resp_len = size - 2, .cancel_after = data[1]};
    for (size_t i = 0; i < MAX_CONNS; i++)
        r.conns[i].fd = -1;
    struct kube_client_opts ko = {
        .qps = 1e9, .burst = 1000000, .timeout_ms = 2000, .connect_timeout_ms = 1000};
    char err[256];
    struct kube_client *c = kube_client_new(base, kc, &ko, err, sizeof(err));
    if (!c)
        fuzz_fail("kube_client_new: %s", err);
    r.accept_ev = event_new(base, listener, EV_READ | EV_PERSIST, on_accept, &r);
    r.deadline_ev = evtimer_new(base, on_deadline, &r);
    struct timeval deadline = {RUN_DEADLINE_S, 0};
    event_add(r.accept_ev, NULL);
    event_add(r.deadline_ev, &deadline);

    struct kube_list_opts lo = {.limit = 2, .resource_version = "100", .timeout_seconds = 2};
    switch (data[0] % 4) {
    case 0:
        r.call = kube_get(c, &deployments, "default", "web", "scale", on_done, &r);
        break;
    case 1:
        r.call = kube_watch(c, &elastiservices, NULL, &lo, on_event, on_done, &r);
        break;
    case 2:
        r.call = kube_list(c, &elastiservices, "default", &lo, on_done, &r);
        break;
    default:
        r.call =
            kube_update_retry(c, &deployments, "default", "web", "scale", 3, mutate, on_done, &r);
        break;
    }
    if (!r.call)
        fuzz_fail("the call did not start");
    while (r.dones == 0 && !r.cancelled && !r.timed_out)
        event_base_loop(base, EVLOOP_ONCE);
    if (r.timed_out)
        fuzz_fail("the call did not end within %d s", RUN_DEADLINE_S);
    if (r.dones > 1)
        fuzz_fail("done ran %d times", r.dones);

    kube_client_free(c);
    /* The server's side of the connections closes with the client's; read them out. */
    for (int i = 0; i < 64; i++) {
        bool open = false;
        for (size_t k = 0; k < r.n_conns; k++)
            open = open || r.conns[k].fd >= 0;
        if (!open)
            break;
        event_base_loop(base, EVLOOP_NONBLOCK);
    }
    for (size_t k = 0; k < r.n_conns; k++)
        conn_close(&r.conns[k]);
    /* A connection still waiting in the backlog (curl gave up first) is accepted and closed. */
    int fd;
    while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        close(fd);
    event_free(r.accept_ev);
    event_free(r.deadline_ev);
    return 0;
}
