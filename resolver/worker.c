/*
 * worker: data-plane threads, their listeners and snapshot pick-up. See worker.h.
 */
#include "resolver/worker.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/log.h"
#include "resolver/conn.h"

#define ACCEPT_BATCH 64
#define SCRATCH_BYTES 65536

int listener_socket(const struct addr *addr, bool reuseport, char *err, size_t errlen)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s: socket: %s", addr->text, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (addr->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: bind: %s", addr->text, strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    if (listen(fd, 4096) < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: listen: %s", addr->text, strerror(e));
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/* ---- accepting ---- */

static void listener_enable(const char *key, void *value, void *on)
{
    struct wlistener *l = value;
    if (on)
        event_add(l->ev, NULL);
    else
        event_del(l->ev);
}

static void listeners_enable(struct worker *w, bool on)
{
    strmap_each(&w->listens, listener_enable, on ? w : NULL);
}

static void accept_pause(struct worker *w)
{
    if (w->accept_paused)
        return;
    w->accept_paused = true;
    listeners_enable(w, false);
    if (!w->fd_exhausted) {
        /* Counted and logged once per episode: until an accept succeeds again. */
        w->fd_exhausted = true;
        counter_add(&w->dp->fd_exhausted, 1);
        log_warn("out of file descriptors: accepting paused until a connection closes",
                 "worker=%d open_connections=%ld", w->id, w->nconns);
    }
    /* Descriptors may also free up in other workers or processes: look again shortly. */
    struct timeval tv = {0, 100000};
    event_add(w->accept_resume_ev, &tv);
}

static void accept_resume(struct worker *w)
{
    if (!w->accept_paused || w->draining)
        return;
    w->accept_paused = false;
    event_del(w->accept_resume_ev);
    listeners_enable(w, true);
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    accept_resume(arg);
}

void worker_conn_closed(struct worker *w)
{
    if (w->accept_paused)
        accept_resume(w);
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    struct wlistener *l = arg;
    struct worker *w = l->w;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_pause(w);
            else if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept failed", "listener=%s error=%s", l->addr.text, strerror(errno));
            return;
        }
        if (w->fd_exhausted) {
            w->fd_exhausted = false;
            log_info("accepting again after running out of file descriptors", "worker=%d", w->id);
        }
        conn_accept(w, cfd, l->route);
        if (w->accept_paused || w->draining)
            return; /* a connection may have exhausted descriptors or started the drain */
    }
}

/* ---- listeners follow the snapshot ---- */

static void sock_release(struct dp_sock *s)
{
    if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
        close(s->fd);
        free(s);
    }
}

int dataplane_listen(struct dataplane *dp, const struct addr *addr, char *err, size_t errlen)
{
    pthread_mutex_lock(&dp->listen_mu);
    if (atomic_load(&dp->draining) || strmap_get(&dp->listens, addr->text)) {
        pthread_mutex_unlock(&dp->listen_mu);
        return 0;
    }
    struct dp_sock *s = calloc(1, sizeof(*s));
    if (!s) {
        pthread_mutex_unlock(&dp->listen_mu);
        snprintf(err, errlen, "%s: out of memory", addr->text);
        return -1;
    }
    s->fd = listener_socket(addr, false, err, errlen);
    atomic_init(&s->refs, 1); /* the table's */
    if (s->fd < 0 || strmap_put(&dp->listens, addr->text, s) < 0) {
        if (s->fd >= 0) {
            close(s->fd);
            snprintf(err, errlen, "%s: out of memory", addr->text);
        }
        free(s);
        pthread_mutex_unlock(&dp->listen_mu);
        return -1;
    }
    pthread_mutex_unlock(&dp->listen_mu);
    return 0;
}

void dataplane_unlisten(struct dataplane *dp, const struct addr *addr)
{
    pthread_mutex_lock(&dp->listen_mu);
    struct dp_sock *s = strmap_del(&dp->listens, addr->text);
    pthread_mutex_unlock(&dp->listen_mu);
    sock_release(s);
}

static void release_listen(const char *key, void *value, void *arg)
{
    sock_release(value);
}

/* Lets go of every socket of the table (drain, free): they close as workers let go too. */
static void listens_release_all(struct dataplane *dp)
{
    pthread_mutex_lock(&dp->listen_mu);
    strmap_each(&dp->listens, release_listen, NULL);
    strmap_clear(&dp->listens);
    pthread_mutex_unlock(&dp->listen_mu);
}

/* A new reference to the socket of addr, or NULL. */
static struct dp_sock *worker_listener_sock(struct worker *w, const struct addr *addr)
{
    pthread_mutex_lock(&w->dp->listen_mu);
    struct dp_sock *s = strmap_get(&w->dp->listens, addr->text);
    if (s)
        atomic_fetch_add(&s->refs, 1);
    pthread_mutex_unlock(&w->dp->listen_mu);
    return s;
}

static void close_listener(struct wlistener *l)
{
    if (l->ev)
        event_free(l->ev);
    sock_release(l->sock);
    free(l);
}

static void close_listener_cb(const char *key, void *value, void *arg)
{
    close_listener(value);
}

/* Closes every listener of the worker (drain, stop, or out of memory). */
static void listeners_close_all(struct worker *w)
{
    strmap_each(&w->listens, close_listener_cb, NULL);
    strmap_clear(&w->listens);
}

/* The listener of rl's address, opened when the worker has none yet; its route becomes rl. */
static void listener_want(struct worker *w, const struct route_listener *rl)
{
    struct wlistener *l = strmap_get(&w->listens, rl->addr.text);
    if (l) {
        l->route = rl;
        return;
    }
    l = calloc(1, sizeof(*l));
    if (l) {
        l->addr = rl->addr;
        l->w = w;
        l->route = rl;
        l->sock = worker_listener_sock(w, &rl->addr);
        if (l->sock)
            l->ev = event_new(w->base, l->sock->fd, EV_READ | EV_PERSIST, on_accept, l);
    }
    if (!l || !l->sock || !l->ev || strmap_put(&w->listens, l->addr.text, l) < 0) {
        counter_add(&w->dp->listen_errors, 1);
        log_error("no listening socket for this address; it is skipped", "worker=%d listener=%s",
                  w->id, rl->addr.text);
        if (l)
            close_listener(l);
        return;
    }
    if (!w->accept_paused)
        event_add(l->ev, NULL);
}

/* rl's listener loses its route when it still points at rl (another route may have it now). */
static void listener_unroute(struct worker *w, const struct route_listener *rl)
{
    struct wlistener *l = strmap_get(&w->listens, rl->addr.text);
    if (l && l->route == rl)
        l->route = NULL;
}

/* rl's listener closes when no route of the new snapshot took it. */
static void listener_drop_unrouted(struct worker *w, const struct route_listener *rl)
{
    struct wlistener *l = strmap_get(&w->listens, rl->addr.text);
    if (l && !l->route) {
        strmap_del(&w->listens, rl->addr.text);
        close_listener(l);
    }
}

/*
 * The worker's listeners follow the services that changed (and the shared ones): kept ones
 * keep their socket and event (only their route moves), new ones take the table's socket,
 * the rest are let go. O(changes + shared listeners), not O(listeners): the worker keeps its
 * listener index across snapshots.
 */
static void listeners_follow(struct worker *w, const struct route_snapshot *old,
                             const struct route_change *ch, size_t n)
{
    const struct route_snapshot *s = w->snap;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; ch[i].was && k < ch[i].was->n_listeners; k++)
            listener_unroute(w, &ch[i].was->listeners[k]);
    }
    for (size_t k = 0; old && k < old->n_listeners; k++)
        listener_unroute(w, &old->listeners[k]);
    for (size_t i = 0; i < n && !w->draining; i++) {
        for (size_t k = 0; ch[i].is && k < ch[i].is->n_listeners; k++)
            listener_want(w, &ch[i].is->listeners[k]);
    }
    for (size_t k = 0; k < s->n_listeners && !w->draining; k++)
        listener_want(w, &s->listeners[k]);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; ch[i].was && k < ch[i].was->n_listeners; k++)
            listener_drop_unrouted(w, &ch[i].was->listeners[k]);
    }
    for (size_t k = 0; old && k < old->n_listeners; k++)
        listener_drop_unrouted(w, &old->listeners[k]);
}

static void apply_snapshot(struct worker *w)
{
    struct route_snapshot *s = route_table_acquire(&w->dp->routes);
    if (!s || s == w->snap) {
        route_snapshot_unref(s);
        return;
    }
    struct route_snapshot *old = w->snap;
    struct route_change *ch = NULL;
    long n = route_snapshot_diff(old, s, &ch);
    if (n < 0) {
        /* out of memory: stay on the old snapshot; the next publish (or this one, at the next
         * notification) tries again */
        log_error("out of memory comparing route snapshots; the worker stays on its old one",
                  "worker=%d", w->id);
        route_snapshot_unref(s);
        return;
    }
    for (long i = 0; i < n; i++) {
        if (ch[i].was)
            ch[i].was->svc->workers[w->id].route = NULL;
    }
    for (long i = 0; i < n; i++) {
        if (ch[i].is)
            ch[i].is->svc->workers[w->id].route = ch[i].is;
    }
    w->snap = s;
    listeners_follow(w, old, ch, (size_t)n);
    conn_snapshot_applied(w, ch, (size_t)n);
    free(ch);
    route_snapshot_unref(old);
    atomic_store(&w->applied_generation, s->generation);
    if (s->cause_ns) {
        uint64_t took = clock_mono_ns() - s->cause_ns;
        hist_observe_ns(&w->dp->route_update_seconds, took);
        log_debug("route snapshot applied",
                  "worker=%d generation=%llu services=%zu changed=%ld listeners=%zu "
                  "since_change_ms=%f",
                  w->id, (unsigned long long)s->generation, s->n_services, n, w->listens.used,
                  (double)took / 1e6);
    }
}

static void on_dispatch(evutil_socket_t fd, short what, void *arg)
{
    conn_dispatch_held(arg);
}

static void on_pace(evutil_socket_t fd, short what, void *arg)
{
    conn_pace_stalled(arg);
}

static void on_reap(evutil_socket_t fd, short what, void *arg)
{
    conn_reap(arg);
}

static void on_snapshot(evutil_socket_t fd, short what, void *arg)
{
    apply_snapshot(arg);
}

static void on_control(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    int ctl = atomic_exchange(&w->control, 0);
    if ((ctl & WORKER_DRAIN) && !w->draining) {
        w->draining = true;
        listeners_close_all(w);
        event_del(w->accept_resume_ev);
    }
    if (ctl & WORKER_STOP) {
        conn_close_all(w);
        event_base_loopbreak(w->base);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals are the control thread's business */
    apply_snapshot(w);
    /* Not dispatch: a worker with no listener yet (Kubernetes mode before the first snapshot)
     * has nothing pending, and must wait for one rather than return. */
    event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

/* ---- the data plane ---- */

static void use_pthreads(void)
{
    evthread_use_pthreads();
}

struct dataplane *dataplane_new(int nworkers, const struct dp_limits *limits)
{
    /* libevent's locking must be on before any base exists: bases are poked across threads. */
    static pthread_once_t threads_once = PTHREAD_ONCE_INIT;
    pthread_once(&threads_once, use_pthreads);

    struct dataplane *dp = calloc(1, sizeof(*dp));
    if (!dp)
        return NULL;
    dp->limits = *limits;
    dp->nworkers = nworkers;
    route_table_init(&dp->routes);
    pthread_mutex_init(&dp->listen_mu, NULL);
    svc_registry_init(&dp->registry, nworkers);
    wakeq_init(&dp->wakeq, NULL);
    dp->workers = calloc((size_t)nworkers, sizeof(*dp->workers));
    if (!dp->workers)
        goto fail;
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = calloc(1, sizeof(*w));
        if (!w)
            goto fail;
        dp->workers[i] = w;
        w->id = i;
        w->dp = dp;
        TAILQ_INIT(&w->conns);
        TAILQ_INIT(&w->closing);
        w->scratch_len = SCRATCH_BYTES;
        w->scratch = malloc(w->scratch_len);
        w->base = event_base_new();
        if (!w->scratch || !w->base)
            goto fail;
        w->snapshot_ev = event_new(w->base, -1, 0, on_snapshot, w);
        w->control_ev = event_new(w->base, -1, 0, on_control, w);
        w->accept_resume_ev = event_new(w->base, -1, 0, on_accept_resume, w);
        w->dispatch_ev = event_new(w->base, -1, 0, on_dispatch, w);
        w->reap_ev = event_new(w->base, -1, 0, on_reap, w);
        w->pace_ev = event_new(w->base, -1, 0, on_pace, w);
        if (!w->snapshot_ev || !w->control_ev || !w->accept_resume_ev || !w->dispatch_ev ||
            !w->reap_ev || !w->pace_ev)
            goto fail;
        route_table_subscribe(&dp->routes, w->snapshot_ev);
    }
    return dp;
fail:
    dataplane_free(dp);
    return NULL;
}

int dataplane_start(struct dataplane *dp, char *err, size_t errlen)
{
    for (int i = 0; i < dp->nworkers; i++) {
        struct worker *w = dp->workers[i];
        int rc = pthread_create(&w->thread, NULL, worker_main, w);
        if (rc) {
            snprintf(err, errlen, "starting worker %d: %s", i, strerror(rc));
            return -1;
        }
    }
    return 0;
}

bool dataplane_ready(struct dataplane *dp)
{
    pthread_mutex_lock(&dp->routes.mu);
    uint64_t gen = dp->routes.generation;
    pthread_mutex_unlock(&dp->routes.mu);
    if (gen == 0 || atomic_load(&dp->draining) || atomic_load(&dp->stopping))
        return false;
    for (int i = 0; i < dp->nworkers; i++) {
        if (atomic_load(&dp->workers[i]->applied_generation) < gen)
            return false;
    }
    return true;
}

long dataplane_open_connections(struct dataplane *dp)
{
    return atomic_load(&dp->open_conns);
}

static void control(struct dataplane *dp, int what)
{
    for (int i = 0; i < dp->nworkers; i++) {
        struct worker *w = dp->workers[i];
        atomic_fetch_or(&w->control, what);
        event_active(w->control_ev, EV_READ, 0);
    }
}

void dataplane_drain(struct dataplane *dp)
{
    atomic_store(&dp->draining, true);
    /* sockets no worker holds close now; the rest close as each worker drains */
    listens_release_all(dp);
    control(dp, WORKER_DRAIN);
}

void dataplane_stop(struct dataplane *dp)
{
    control(dp, WORKER_STOP);
    for (int i = 0; i < dp->nworkers; i++) {
        if (dp->workers[i]->thread)
            pthread_join(dp->workers[i]->thread, NULL);
        dp->workers[i]->thread = 0;
    }
}

void dataplane_free(struct dataplane *dp)
{
    if (!dp)
        return;
    for (int i = 0; dp->workers && i < dp->nworkers; i++) {
        struct worker *w = dp->workers[i];
        if (!w)
            continue;
        if (w->base)
            conn_close_all(
                w); /* none left after a stop; a data plane never started may have some */
        listeners_close_all(w);
        const struct route_service *r;
        for (size_t j = 0; (r = route_snapshot_next(w->snap, &j)); j++)
            r->svc->workers[w->id].route = NULL;
        route_snapshot_unref(w->snap);
        for (size_t j = 0; j < w->n_dispatch; j++)
            svc_state_unref(w->dispatch[j]);
        free(w->dispatch);
        for (size_t j = 0; j < w->n_pace_wait; j++)
            svc_state_unref(w->pace_wait[j]);
        free(w->pace_wait);
        if (w->pace_ev)
            event_free(w->pace_ev);
        if (w->snapshot_ev)
            event_free(w->snapshot_ev);
        if (w->control_ev)
            event_free(w->control_ev);
        if (w->accept_resume_ev)
            event_free(w->accept_resume_ev);
        if (w->dispatch_ev)
            event_free(w->dispatch_ev);
        if (w->reap_ev)
            event_free(w->reap_ev);
        if (w->base)
            event_base_free(w->base);
        free(w->scratch);
        free(w);
    }
    free(dp->workers);
    listens_release_all(dp);
    strmap_clear(&dp->listen_routes);
    pthread_mutex_destroy(&dp->listen_mu);
    route_table_destroy(&dp->routes);
    wakeq_destroy(&dp->wakeq);
    svc_registry_destroy(&dp->registry);
    free(dp);
}
