/*
 * standalone: wake commands, readiness probes and snapshots without Kubernetes. See
 * standalone.h.
 */
#include "standalone/standalone.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/clock.h"
#include "resolver/dataplane.h"

extern char **environ;

/* How long readiness probing goes on after the last wake when nothing is held any more. */
#define PROBE_LINGER_NS (5ull * 1000000000ull)
#define PROBE_TIMEOUT_S 1

struct sa_service;

struct sa_backend {
    struct addr addr;
    bool ready;
    struct bufferevent *probe; /* the probe in flight, or NULL */
    struct sa_service *svc;
};

struct sa_service {
    struct standalone *sa;
    const struct config_service *cfg;
    struct svc_state *svc;       /* one reference */
    struct route_probes *probes; /* one reference; the snapshot takes more */
    struct sa_backend *backends; /* [cfg->n_backends] */
    pid_t wake_pid;              /* the wake process alive now, 0 none */
    int wake_out_fd;             /* its output, -1 when closed */
    struct event *wake_out_ev;
    struct evbuffer *wake_line; /* partial output line */
    struct event *probe_timer;
    uint64_t last_wake_ns;
    char *reason; /* why it is not ready, for 504 answers */
    uint64_t wake_runs, wake_failures, probes_ok, probes_failed;
};

struct standalone {
    struct event_base *base;
    struct dataplane *dp;
    struct config *cfg;
    struct sa_service *services; /* [cfg->n_services] */
    struct event *sigchld;
    struct event *wake_ev; /* the wake queue's notification */
};

static int publish(struct standalone *sa, char *err, size_t errlen);
static void probe_start(struct sa_backend *b);

static void set_reason(struct sa_service *s, const char *reason)
{
    free(s->reason);
    s->reason = reason ? strdup(reason) : NULL;
}

static bool any_ready(const struct sa_service *s)
{
    for (size_t i = 0; i < s->cfg->n_backends; i++) {
        if (s->backends[i].ready)
            return true;
    }
    return false;
}

/* ---- snapshots ---- */

/* Names the configuration's listen entry of a listener that could not be opened. */
static void listen_error_where(const struct standalone *sa, const struct dataplane_listen_error *e,
                               char *err, size_t errlen)
{
    const struct config *cfg = sa->cfg;
    for (size_t i = 0; i < cfg->n_services; i++) {
        for (size_t l = 0; l < cfg->services[i].n_listen; l++) {
            if (e->svc == sa->services[i].svc &&
                addr_equal(&cfg->services[i].listen[l], &e->addr)) {
                snprintf(err, errlen, "services[%zu].listen[%zu]: %s", i, l, e->why);
                return;
            }
        }
    }
    for (size_t l = 0; l < cfg->n_shared_listen; l++) {
        if (!e->svc && addr_equal(&cfg->shared_listen[l], &e->addr)) {
            snprintf(err, errlen, "shared.listen[%zu]: %s", l, e->why);
            return;
        }
    }
    snprintf(err, errlen, "%s", e->why);
}

/* Every service is built anew (a handful: standalone configurations are small). */
static int publish(struct standalone *sa, char *err, size_t errlen)
{
    const struct config *cfg = sa->cfg;
    struct route_snapshot *snap = route_snapshot_derive(NULL);
    bool ok = snap != NULL;
    for (size_t i = 0; ok && i < cfg->n_services; i++) {
        struct sa_service *s = &sa->services[i];
        /* Standalone services have one port: every listen address goes to the backends. */
        struct route_service *r = route_service_new(svc_state_ref(s->svc), 1, s->cfg->n_listen);
        struct addr *ready = calloc(s->cfg->n_backends ? s->cfg->n_backends : 1, sizeof(*ready));
        size_t n_ready = 0;
        for (size_t b = 0; ready && b < s->cfg->n_backends; b++) {
            if (s->backends[b].ready)
                ready[n_ready++] = s->backends[b].addr;
        }
        ok = r && ready && route_service_set_reason(r, s->reason) == 0 &&
             route_service_set_port(r, 0, "", s->cfg->protocol, 0, ready, n_ready) == 0;
        free(ready);
        if (!ok) {
            route_service_unref(r);
            break;
        }
        route_service_set_probes(r, s->probes);
        const struct waiting_page_spec *page = &s->cfg->waiting_page;
        if (page->enabled && route_service_set_waiting_page(r, page->html, page->html_len,
                                                            page->retry_after_s) < 0) {
            route_service_unref(r);
            ok = false;
            break;
        }
        route_service_set_limits(r, s->cfg->hold_timeout_s, s->cfg->max_held_connections,
                                 s->cfg->max_held_bytes);
        for (size_t l = 0; l < s->cfg->n_listen; l++)
            route_service_add_listener(r, 0, &s->cfg->listen[l]);
        ok = route_snapshot_put(snap, i, r) == 0;
    }
    for (size_t l = 0; ok && l < cfg->n_shared_listen; l++)
        ok = route_snapshot_add_shared(snap, &cfg->shared_listen[l]) == 0;
    if (!ok) {
        route_snapshot_unref(snap);
        log_error("out of memory building a route snapshot; the previous one stays", NULL);
        if (err)
            snprintf(err, errlen, "out of memory");
        return -1;
    }
    struct dataplane_listen_error *errs;
    size_t n_errs;
    dataplane_publish(sa->dp, snap, 0, &errs, &n_errs);
    for (size_t k = 0; k < n_errs; k++)
        log_error("cannot listen; the address is left out", "error=%s", errs[k].why);
    if (err && n_errs)
        listen_error_where(sa, &errs[0], err, errlen);
    dataplane_listen_errors_free(errs, n_errs);
    return n_errs ? -1 : 0;
}

static void backend_set_ready(struct sa_backend *b, bool ready)
{
    if (b->ready == ready)
        return;
    b->ready = ready;
    struct sa_service *s = b->svc;
    log_info(ready ? "backend ready" : "backend not ready", "service=%s backend=%s",
             svc_state_key(s->svc), b->addr.text);
    if (ready)
        set_reason(s, NULL);
    publish(s->sa, NULL, 0);
}

/* ---- readiness probes ---- */

static void probe_done(struct sa_backend *b, bool ok, const char *why)
{
    if (b->probe) {
        bufferevent_free(b->probe);
        b->probe = NULL;
    }
    struct sa_service *s = b->svc;
    if (ok) {
        s->probes_ok++;
    } else {
        s->probes_failed++;
        log_debug("readiness probe failed", "service=%s backend=%s reason=%s",
                  svc_state_key(s->svc), b->addr.text, why);
    }
    backend_set_ready(b, ok);
}

static void on_probe_read(struct bufferevent *bev, void *arg)
{
    struct sa_backend *b = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_CRLF);
    if (!line) {
        if (evbuffer_get_length(in) > 8192)
            probe_done(b, false, "status line too long");
        return;
    }
    int status = 0;
    bool ok = sscanf(line, "HTTP/%*d.%*d %d", &status) == 1 && status >= 200 && status < 400;
    free(line);
    probe_done(b, ok, ok ? NULL : "status not 2xx/3xx");
}

static void on_probe_event(struct bufferevent *bev, short what, void *arg)
{
    struct sa_backend *b = arg;
    if (what & BEV_EVENT_CONNECTED) {
        if (b->svc->cfg->readiness == READINESS_TCP) {
            probe_done(b, true, NULL);
            return;
        }
        char req[1200];
        snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: holdfast-probe\r\n"
                 "Accept: */*\r\nConnection: close\r\n\r\n",
                 b->svc->cfg->readiness_path, b->addr.text);
        bufferevent_write(bev, req, strlen(req));
        bufferevent_enable(bev, EV_READ);
        return;
    }
    if (what & BEV_EVENT_TIMEOUT)
        probe_done(b, false, "timeout");
    else if (what & BEV_EVENT_EOF)
        probe_done(b, false, "closed before answering");
    else
        probe_done(b, false, evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

static void probe_start(struct sa_backend *b)
{
    if (b->probe)
        return;
    struct bufferevent *bev = bufferevent_socket_new(b->svc->sa->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!bev)
        return;
    bufferevent_setcb(bev, on_probe_read, NULL, on_probe_event, b);
    struct timeval tv = {PROBE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(bev, &tv, &tv);
    b->probe = bev;
    if (bufferevent_socket_connect(bev, (struct sockaddr *)&b->addr.ss, (int)b->addr.len) < 0) {
        /* Immediate failure (refused on loopback): the event callback may not run. */
        if (b->probe)
            probe_done(b, false, "connect failed");
    }
}

static bool probing_wanted(const struct sa_service *s)
{
    bool all_ready = true;
    for (size_t i = 0; i < s->cfg->n_backends; i++)
        all_ready = all_ready && s->backends[i].ready;
    if (all_ready)
        return false;
    return svc_state_held(s->svc) > 0 || clock_mono_ns() - s->last_wake_ns < PROBE_LINGER_NS;
}

static void on_probe_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sa_service *s = arg;
    if (!probing_wanted(s))
        return;
    for (size_t i = 0; i < s->cfg->n_backends; i++) {
        if (!s->backends[i].ready)
            probe_start(&s->backends[i]);
    }
    struct timeval tv = {(time_t)(s->cfg->readiness_period_ms / 1000),
                         (suseconds_t)((s->cfg->readiness_period_ms % 1000) * 1000)};
    event_add(s->probe_timer, &tv);
}

static void probing_start(struct sa_service *s)
{
    if (!event_pending(s->probe_timer, EV_TIMEOUT, NULL))
        on_probe_timer(-1, 0, s); /* probe at once, then every period */
}

/* ---- wake processes ---- */

static void on_wake_output(evutil_socket_t fd, short what, void *arg)
{
    struct sa_service *s = arg;
    char buf[4096];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n > 0)
        evbuffer_add(s->wake_line, buf, (size_t)n);
    char *line;
    size_t len;
    while ((line = evbuffer_readln(s->wake_line, &len, EVBUFFER_EOL_LF))) {
        log_info("wake command output", "service=%s line=%s", svc_state_key(s->svc), line);
        free(line);
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        size_t rest = evbuffer_get_length(s->wake_line);
        if (rest) {
            char *tail = malloc(rest + 1);
            if (tail) {
                evbuffer_remove(s->wake_line, tail, rest);
                tail[rest] = '\0';
                log_info("wake command output", "service=%s line=%s", svc_state_key(s->svc), tail);
                free(tail);
            }
        }
        event_free(s->wake_out_ev);
        s->wake_out_ev = NULL;
        close(s->wake_out_fd);
        s->wake_out_fd = -1;
    }
}

static void wake_run(struct sa_service *s)
{
    if (!s->cfg->wake_argv || s->wake_pid > 0)
        return;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        log_error("cannot run the wake command", "service=%s error=%s", svc_state_key(s->svc),
                  strerror(errno));
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
    posix_spawnattr_init(&attr);
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGTERM);
    sigaddset(&dfl, SIGINT);
    sigaddset(&dfl, SIGCHLD);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &dfl);
    posix_spawnattr_setpgroup(&attr, 0); /* its own process group, so stop reaches children */
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                        POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawnp(&pid, s->cfg->wake_argv[0], &fa, &attr, s->cfg->wake_argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        char reason[300];
        snprintf(reason, sizeof(reason), "wake command could not start: %s", strerror(rc));
        set_reason(s, reason);
        s->wake_failures++;
        log_error("wake command could not start", "service=%s command=%s error=%s",
                  svc_state_key(s->svc), s->cfg->wake_argv[0], strerror(rc));
        publish(s->sa, NULL, 0);
        return;
    }
    s->wake_pid = pid;
    s->wake_runs++;
    log_info("wake command started", "service=%s pid=%d", svc_state_key(s->svc), (int)pid);
    if (s->wake_out_ev) { /* output of an earlier run still open (a daemon kept it) */
        event_free(s->wake_out_ev);
        close(s->wake_out_fd);
    }
    s->wake_out_fd = pipefd[0];
    fcntl(s->wake_out_fd, F_SETFL, O_NONBLOCK);
    s->wake_out_ev =
        event_new(s->sa->base, s->wake_out_fd, EV_READ | EV_PERSIST, on_wake_output, s);
    if (s->wake_out_ev)
        event_add(s->wake_out_ev, NULL);
}

static void on_sigchld(evutil_socket_t fd, short what, void *arg)
{
    struct standalone *sa = arg;
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (size_t i = 0; i < sa->cfg->n_services; i++) {
            struct sa_service *s = &sa->services[i];
            if (s->wake_pid != pid)
                continue;
            s->wake_pid = 0;
            char reason[200];
            if (WIFEXITED(status)) {
                log_info("wake command exited", "service=%s pid=%d status=%d",
                         svc_state_key(s->svc), (int)pid, WEXITSTATUS(status));
                snprintf(reason, sizeof(reason), "wake command exited with status %d",
                         WEXITSTATUS(status));
            } else {
                log_info("wake command killed", "service=%s pid=%d signal=%d",
                         svc_state_key(s->svc), (int)pid, WTERMSIG(status));
                snprintf(reason, sizeof(reason), "wake command killed by signal %d",
                         WTERMSIG(status));
            }
            if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
                s->wake_failures++;
                if (!any_ready(s)) {
                    set_reason(s, reason);
                    publish(sa, NULL, 0);
                }
            }
        }
    }
}

/* ---- wakes ---- */

static struct sa_service *find_service(struct standalone *sa, const struct svc_state *svc)
{
    for (size_t i = 0; i < sa->cfg->n_services; i++) {
        if (sa->services[i].svc == svc)
            return &sa->services[i];
    }
    return NULL;
}

void standalone_on_wake(struct standalone *sa)
{
    struct wake_msg *m = dataplane_wakes_take(sa->dp);
    while (m) {
        struct wake_msg *next = m->next;
        struct sa_service *s = find_service(sa, m->svc);
        if (s) {
            if (m->kind == WAKE_BACKEND_FAILED) {
                for (size_t i = 0; i < s->cfg->n_backends; i++) {
                    if (addr_equal(&s->backends[i].addr, &m->backend))
                        backend_set_ready(&s->backends[i], false);
                }
            }
            s->last_wake_ns = clock_mono_ns();
            if (!any_ready(s))
                wake_run(s);
            probing_start(s);
        }
        wake_msg_free(m);
        m = next;
    }
}

static void on_wake_event(evutil_socket_t fd, short what, void *arg)
{
    standalone_on_wake(arg);
}

/* ---- life ---- */

struct standalone *standalone_start(struct event_base *base, struct dataplane *dp,
                                    struct config *cfg, char *err, size_t errlen)
{
    struct standalone *sa = calloc(1, sizeof(*sa));
    if (!sa) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sa->base = base;
    sa->dp = dp;
    sa->cfg = cfg;
    sa->services = calloc(cfg->n_services, sizeof(*sa->services));
    if (!sa->services) {
        free(sa);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < cfg->n_services; i++) {
        struct sa_service *s = &sa->services[i];
        s->sa = sa;
        s->cfg = &cfg->services[i];
        s->wake_out_fd = -1;
        s->svc = dataplane_service(dp, s->cfg->namespace_, s->cfg->name);
        /* The rules move from the config to a refcounted wrapper the snapshots share. */
        s->probes = route_probes_ref(cfg->services[i].probes);
        s->backends = calloc(s->cfg->n_backends, sizeof(*s->backends));
        s->wake_line = evbuffer_new();
        s->probe_timer = event_new(base, -1, 0, on_probe_timer, s);
        if (!s->svc || !s->probes || !s->backends || !s->wake_line || !s->probe_timer) {
            snprintf(err, errlen, "out of memory");
            standalone_free(sa);
            return NULL;
        }
        for (size_t b = 0; b < s->cfg->n_backends; b++) {
            s->backends[b].addr = s->cfg->backends[b];
            s->backends[b].svc = s;
        }
    }
    sa->wake_ev = event_new(base, -1, EV_PERSIST, on_wake_event, sa);
    sa->sigchld = evsignal_new(base, SIGCHLD, on_sigchld, sa);
    if (!sa->wake_ev || !sa->sigchld) {
        snprintf(err, errlen, "out of memory");
        standalone_free(sa);
        return NULL;
    }
    evsignal_add(sa->sigchld, NULL);
    dataplane_wake_notify(dp, sa->wake_ev);
    /* Every address is opened here, before anything runs: one that is taken fails the start. */
    if (publish(sa, err, errlen) < 0) {
        standalone_free(sa);
        return NULL;
    }
    /* Backends already running are found at once, without waiting for a request. */
    for (size_t i = 0; i < cfg->n_services; i++) {
        struct sa_service *s = &sa->services[i];
        for (size_t b = 0; b < s->cfg->n_backends; b++)
            probe_start(&s->backends[b]);
    }
    return sa;
}

void standalone_metrics(struct mtext *out, void *arg)
{
    struct standalone *sa = arg;
    static const struct {
        const char *name;
        const char *help;
        size_t offset;
    } fams[] = {
        {"holdfast_wake_command_runs_total", "Wake commands started.",
         offsetof(struct sa_service, wake_runs)},
        {"holdfast_wake_command_failures_total",
         "Wake commands that could not start or exited non-zero.",
         offsetof(struct sa_service, wake_failures)},
        {"holdfast_readiness_probes_total", "Readiness probes that passed.",
         offsetof(struct sa_service, probes_ok)},
        {"holdfast_readiness_probe_failures_total", "Readiness probes that failed.",
         offsetof(struct sa_service, probes_failed)},
    };
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        mtext_family(out, fams[f].name, "counter", fams[f].help);
        for (size_t i = 0; i < sa->cfg->n_services; i++) {
            const struct sa_service *s = &sa->services[i];
            uint64_t v = *(const uint64_t *)((const char *)s + fams[f].offset);
            char labels[SVC_LABELS_MAX];
            svc_state_labels(s->svc, labels, sizeof(labels));
            mtext_sample(out, fams[f].name, labels, (double)v);
        }
    }
    mtext_family(out, "holdfast_backends_ready", "gauge", "Backends passing readiness now.");
    for (size_t i = 0; i < sa->cfg->n_services; i++) {
        const struct sa_service *s = &sa->services[i];
        size_t n = 0;
        for (size_t b = 0; b < s->cfg->n_backends; b++)
            n += s->backends[b].ready;
        char labels[SVC_LABELS_MAX];
        svc_state_labels(s->svc, labels, sizeof(labels));
        mtext_sample(out, "holdfast_backends_ready", labels, (double)n);
    }
}

void standalone_free(struct standalone *sa)
{
    if (!sa)
        return;
    for (size_t i = 0; sa->services && i < sa->cfg->n_services; i++) {
        struct sa_service *s = &sa->services[i];
        if (s->wake_pid > 0) {
            log_info("stopping wake process group", "service=%s pid=%d",
                     s->svc ? svc_state_key(s->svc) : "", (int)s->wake_pid);
            kill(-s->wake_pid, SIGTERM);
            for (int t = 0; t < 50 && waitpid(s->wake_pid, NULL, WNOHANG) == 0; t++)
                usleep(20000);
            kill(-s->wake_pid, SIGKILL);
            waitpid(s->wake_pid, NULL, WNOHANG);
        }
        if (s->wake_out_ev)
            event_free(s->wake_out_ev);
        if (s->wake_out_fd >= 0)
            close(s->wake_out_fd);
        if (s->wake_line)
            evbuffer_free(s->wake_line);
        if (s->probe_timer)
            event_free(s->probe_timer);
        for (size_t b = 0; s->backends && b < s->cfg->n_backends; b++) {
            if (s->backends[b].probe)
                bufferevent_free(s->backends[b].probe);
        }
        free(s->backends);
        route_probes_unref(s->probes);
        svc_state_unref(s->svc);
        free(s->reason);
    }
    if (sa->sigchld)
        event_free(sa->sigchld);
    if (sa->wake_ev) {
        dataplane_wake_notify(sa->dp, NULL);
        event_free(sa->wake_ev);
    }
    free(sa->services);
    free(sa);
}
