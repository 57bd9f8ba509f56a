/*
 * early: early readiness. From a woken service's first held connection to its switch to serve,
 * this replica watches the target's pods (a pod informer by the workload's selector, e->early)
 * and runs each pod's own startupProbe and readinessProbe itself (earlyplan.h reads them) every
 * EARLY_PERIOD_MS, one probe in flight per pod and at most EARLY_MAX_INFLIGHT in all. The first
 * pod whose every container passed becomes an endpoint of the service's route (early_endpoints),
 * so the held connections go to it before the kubelet's next readiness probe marks it Ready;
 * the switch to serve still waits for the target's EndpointSlice (es_reconcile). A pod that
 * passed is probed again every EARLY_RECHECK_MS until the kubelet says Ready: failureThreshold
 * failures in a row take it out of the route again. A pod holdfast cannot probe the way the
 * kubelet would (exec, no readinessProbe, readiness gates, a probe it cannot send) is left to
 * the kubelet, said once per pod. spec.earlyReadiness {enabled: false} turns it off.
 *
 * Every replica that holds connections does this for itself (the leader's cold start record
 * takes its own first pass as the earlyReady phase). Nothing here writes to the API.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/addr.h"
#include "controller/earlyplan.h"
#include "controller/es.h"

/* A pod's probes run this often until it passes (the "every 50 ms"). */
#define EARLY_PERIOD_MS 50
/* A pod that passed is checked again this often, until the kubelet marks it Ready. */
#define EARLY_RECHECK_MS 1000
/* Probes in flight at once, all services together. */
#define EARLY_MAX_INFLIGHT 64
/* A watch with nothing held and no pod passed for this long ends (a wake whose pods never
 * came: the next held connection starts it again). */
#define EARLY_IDLE_MS 60000

enum early_state {
    EP_WAIT,     /* not probed now: no address, not running, leaving, or deleting */
    EP_PROBING,  /* its probes run every EARLY_PERIOD_MS */
    EP_PASSED,   /* an endpoint of the route; checked again every EARLY_RECHECK_MS */
    EP_KUBELET,  /* the kubelet marked it Ready first: nothing more to do */
    EP_FALLBACK, /* left to the kubelet (plan.fallback says why) */
};

struct early_pod {
    struct early_pod *next;
    struct early_set *set;
    char *name, *uid;
    struct early_plan plan;
    struct early_progress *prog; /* one per container of plan */
    enum early_state state;
    bool fallback_said;
    struct event *tick;
    /* the probe in flight: an HTTP or gRPC request, or a TCP connect */
    struct http_request *req;
    evutil_socket_t fd;
    struct event *fd_ev;
    int run_container; /* what it runs: the container, its startupProbe or readinessProbe */
    bool run_startup;
    uint64_t sent_ms; /* clock_mono_ms */
    int recheck_failures;
    int recheck_next; /* the container the next recheck runs */
    bool kept;        /* passed before the kubelet's Ready: stays in the route until the watch
                         ends (the target's EndpointSlice may list it a moment after Ready) */
};

struct early_set {
    struct es *e;
    struct informer *inf;
    struct early_pod *pods;
    uint64_t active_ms; /* last time something was held or a pod passed (clock_mono_ms) */
    bool passed_once;   /* a pod passed in this watch */
};

static void pod_tick(evutil_socket_t fd, short what, void *arg);

static void tick_in(struct early_pod *p, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (p->tick)
        evtimer_add(p->tick, &tv);
}

/* Stops the probe in flight, if any. */
static void run_cancel(struct early_pod *p)
{
    struct controller *c = p->set->e->c;
    if (p->req) {
        http_request_cancel(p->req);
        p->req = NULL;
        c->early_inflight--;
    }
    if (p->fd_ev) {
        event_free(p->fd_ev);
        p->fd_ev = NULL;
        close(p->fd);
        p->fd = -1;
        c->early_inflight--;
    }
}

static bool passed_pod(const struct early_pod *p)
{
    return p->state == EP_PASSED || p->kept;
}

/* Out of the route (when it was in) and back to the start of its checks. */
static void pod_reset(struct early_pod *p, enum early_state to)
{
    bool was = passed_pod(p);
    run_cancel(p);
    if (p->tick)
        evtimer_del(p->tick);
    for (size_t i = 0; i < p->plan.n_containers; i++)
        p->prog[i] = (struct early_progress){.seen_ms = -1};
    p->state = to;
    p->kept = false;
    p->recheck_failures = 0;
    p->recheck_next = 0;
    if (was)
        routes_changed(p->set->e);
}

static void pod_free(struct early_pod *p)
{
    pod_reset(p, EP_WAIT);
    if (p->tick)
        event_free(p->tick);
    early_plan_clear(&p->plan);
    free(p->prog);
    free(p->name);
    free(p->uid);
    free(p);
}

/* The pod passed every check: its held connections may go to it. */
static void pod_pass(struct early_pod *p)
{
    struct es *e = p->set->e;
    struct controller *c = e->c;
    p->state = EP_PASSED;
    p->recheck_failures = 0;
    p->recheck_next = 0;
    c->early_ready_pods++;
    if (!p->set->passed_once) {
        p->set->passed_once = true;
        if (e->cold_open && e->cold.at_ms[COLD_EARLY_READY] < 0)
            e->cold.at_ms[COLD_EARLY_READY] = clock_wall_ns() / 1000000;
    }
    p->set->active_ms = clock_mono_ms();
    log_info("early ready: held connections go to the pod before the kubelet marks it Ready",
             "elastiservice=%s pod=%s address=%s held=%ld", e->key, p->name, p->plan.ip,
             e->svc ? svc_state_held(e->svc) : 0L);
    c->last_change_ns = clock_mono_ns(); /* what the data plane's ready -> first byte counts from */
    routes_changed(e);
    tick_in(p, EARLY_RECHECK_MS);
}

/* A probe's result. */
static void run_done(struct early_pod *p, bool ok)
{
    struct controller *c = p->set->e->c;
    c->early_probes[ok ? 1 : 0]++;
    uint64_t now = clock_mono_ms();
    int64_t next = (int64_t)(p->sent_ms + EARLY_PERIOD_MS) - (int64_t)now;
    if (p->run_container < 0 || (size_t)p->run_container >= p->plan.n_containers)
        return;
    const struct early_container *ct = &p->plan.containers[p->run_container];
    if (p->state == EP_PASSED) {
        if (ok) {
            p->recheck_failures = 0;
        } else if (++p->recheck_failures >= ct->ready.failure_threshold) {
            log_info("early ready: the pod failed its readinessProbe again: out of the route",
                     "elastiservice=%s pod=%s container=%s failures=%d", p->set->e->key, p->name,
                     ct->name ? ct->name : "?", p->recheck_failures);
            pod_reset(p, EP_PROBING);
            tick_in(p, next);
            return;
        }
        tick_in(p, EARLY_RECHECK_MS);
        return;
    }
    if (p->state != EP_PROBING)
        return;
    const struct early_check *ck = p->run_startup ? &ct->startup : &ct->ready;
    early_result(ck, &p->prog[p->run_container], p->run_startup, ok);
    struct early_due due;
    if (early_next(&p->plan, p->prog, (int64_t)(clock_wall_ns() / 1000000), &due)) {
        pod_pass(p);
        return;
    }
    tick_in(p, next);
}

static void on_http(struct http_request *req, const struct http_response *resp, void *arg)
{
    (void)req;
    struct early_pod *p = arg;
    p->req = NULL;
    p->set->e->c->early_inflight--;
    run_done(p, resp->curl_code == 0 && resp->status >= 200 && resp->status < 400);
}

static void on_grpc(struct http_request *req, const struct http_response *resp, void *arg)
{
    struct early_pod *p = arg;
    p->req = NULL;
    p->set->e->c->early_inflight--;
    const char *gs = http_response_header(req, "grpc-status", NULL);
    bool ok = resp->curl_code == 0 && resp->status == 200 && gs && strcmp(gs, "0") == 0 &&
              early_grpc_serving((const unsigned char *)resp->body, resp->body_len);
    run_done(p, ok);
}

static void on_connected(evutil_socket_t fd, short what, void *arg)
{
    struct early_pod *p = arg;
    int err = 0;
    socklen_t len = sizeof(err);
    bool ok =
        (what & EV_WRITE) && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
    event_free(p->fd_ev);
    p->fd_ev = NULL;
    close(p->fd);
    p->fd = -1;
    p->set->e->c->early_inflight--;
    run_done(p, ok);
}

/* The kubelet's own request headers unless the probe sets them. */
static bool has_header(const struct early_check *ck, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < ck->n_headers; i++)
        if (strncasecmp(ck->headers[i], name, n) == 0 && ck->headers[i][n] == ':')
            return true;
    return false;
}

/* Sends the check; false when it could not be started (counted as a failure by the caller). */
static bool run_start(struct early_pod *p, const struct early_check *ck)
{
    struct controller *c = p->set->e->c;
    const char *ip = p->plan.ip;
    if (ck->kind == EARLY_CHECK_TCP) {
        char text[ADDR_TEXT_MAX], err[128];
        struct addr a;
        if (addr_format(text, sizeof(text), ck->host ? ck->host : ip, ck->port) < 0 ||
            addr_parse(text, &a, err, sizeof(err)) < 0)
            return false;
        int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return false;
        if (connect(fd, (struct sockaddr *)&a.ss, a.len) < 0 && errno != EINPROGRESS) {
            close(fd);
            return false;
        }
        p->fd_ev = event_new(c->base, fd, EV_WRITE, on_connected, p);
        struct timeval tv = {ck->timeout_ms / 1000, (ck->timeout_ms % 1000) * 1000};
        if (!p->fd_ev || event_add(p->fd_ev, &tv) != 0) {
            if (p->fd_ev)
                event_free(p->fd_ev);
            p->fd_ev = NULL;
            close(fd);
            return false;
        }
        p->fd = fd;
        c->early_inflight++;
        return true;
    }
    char url[1024];
    if (early_url(ck, ip, url, sizeof(url)) < 0)
        return false;
    const char *headers[EARLY_MAX_HEADERS + 4];
    size_t nh = 0;
    struct http_tls tls = {.insecure = true}; /* the kubelet does not verify a pod's certificate */
    struct http_request_opts o = {
        .url = url,
        .headers = headers,
        .tls = &tls,
        .connect_timeout_ms = ck->timeout_ms,
        .timeout_ms = ck->timeout_ms,
        .no_proxy = true,
        .fresh_connection = true,
        .arg = p,
    };
    unsigned char body[5 + 3 + 16384];
    if (ck->kind == EARLY_CHECK_GRPC) {
        size_t n = early_grpc_request(ck->grpc_service, body, sizeof(body));
        if (!n)
            return false;
        headers[nh++] = "Content-Type: application/grpc";
        headers[nh++] = "TE: trailers";
        headers[nh++] = "User-Agent: kube-probe/holdfast";
        o.method = "POST";
        o.body = (const char *)body;
        o.body_len = n;
        o.h2_prior_knowledge = true;
        o.on_done = on_grpc;
    } else {
        for (size_t i = 0; i < ck->n_headers; i++)
            headers[nh++] = ck->headers[i];
        if (!has_header(ck, "User-Agent"))
            headers[nh++] = "User-Agent: kube-probe/holdfast";
        if (!has_header(ck, "Accept"))
            headers[nh++] = "Accept: */*";
        o.method = "GET";
        o.headers_only = true;
        o.on_done = on_http;
    }
    headers[nh] = NULL;
    p->req = http_request_start(c->http, &o);
    if (!p->req)
        return false;
    c->early_inflight++;
    return true;
}

/* Runs what is due for the pod, or waits for it. */
static void pod_step(struct early_pod *p)
{
    struct controller *c = p->set->e->c;
    if (p->req || p->fd_ev)
        return;
    const struct early_check *ck = NULL;
    if (p->state == EP_PASSED) {
        /* again, one container's readinessProbe per recheck, in turn */
        for (size_t k = 0; k < p->plan.n_containers && !ck; k++) {
            size_t i = ((size_t)p->recheck_next + k) % p->plan.n_containers;
            if (p->plan.containers[i].ready.kind != EARLY_CHECK_NONE) {
                ck = &p->plan.containers[i].ready;
                p->run_container = (int)i;
                p->recheck_next = (int)((i + 1) % p->plan.n_containers);
            }
        }
        if (!ck)
            return;
        p->run_startup = false;
    } else if (p->state == EP_PROBING) {
        struct early_due due;
        int64_t now = (int64_t)(clock_wall_ns() / 1000000);
        if (early_next(&p->plan, p->prog, now, &due)) {
            pod_pass(p);
            return;
        }
        if (due.container < 0)
            return; /* a container not running yet, or the kubelet's startupProbe: the watch */
        if (due.at_ms > now) {
            tick_in(p, due.at_ms - now);
            return;
        }
        ck = due.check;
        p->run_container = due.container;
        p->run_startup = due.startup;
    } else {
        return;
    }
    if (c->early_inflight >= EARLY_MAX_INFLIGHT) {
        tick_in(p, EARLY_PERIOD_MS);
        return;
    }
    p->sent_ms = clock_mono_ms();
    if (!run_start(p, ck))
        run_done(p, false);
}

static void pod_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pod_step(arg);
}

/* Says once per pod why it is left to the kubelet, and counts it. */
static void pod_fall_back(struct early_pod *p)
{
    if (p->fallback_said)
        return;
    p->fallback_said = true;
    p->set->e->c->early_fallbacks[p->plan.fallback]++;
    log_info("early readiness: the pod is left to the kubelet's readiness probe",
             "elastiservice=%s pod=%s reason=%s why=%s", p->set->e->key, p->name,
             early_fallback_label(p->plan.fallback), p->plan.why);
}

/* Whether a new reading of the pod keeps what its checks found: the same containers, none
 * restarted or stopped. */
static bool same_run(const struct early_plan *a, const struct early_plan *b)
{
    if (a->n_containers != b->n_containers || strcmp(a->ip, b->ip) != 0)
        return false;
    for (size_t i = 0; i < a->n_containers; i++) {
        const struct early_container *x = &a->containers[i], *y = &b->containers[i];
        if (x->restarts != y->restarts || (x->running && !y->running) ||
            x->started_ms != y->started_ms)
            return false;
    }
    return true;
}

/* A pod added or changed: what to do with it now. */
static void pod_seen(struct early_set *s, const cJSON *obj)
{
    struct es *e = s->e;
    const cJSON *md = json_get(obj, "metadata");
    const char *name = json_str(md, "name"), *uid = json_str(md, "uid");
    if (!name)
        return;
    struct early_pod *p = s->pods;
    while (p && strcmp(p->name, name) != 0)
        p = p->next;
    if (p && uid && p->uid && strcmp(uid, p->uid) != 0) {
        /* the same name, another pod (a StatefulSet's): start over */
        struct early_pod **pp = &s->pods;
        while (*pp != p)
            pp = &(*pp)->next;
        *pp = p->next;
        pod_free(p);
        p = NULL;
    }
    if (!p) {
        p = calloc(1, sizeof(*p));
        if (!p || !(p->name = strdup(name))) {
            free(p);
            return;
        }
        p->uid = uid ? strdup(uid) : NULL;
        p->set = s;
        p->fd = -1;
        p->tick = evtimer_new(e->c->base, pod_tick, p);
        p->next = s->pods;
        s->pods = p;
    }
    struct early_plan plan = {0};
    early_plan_parse(obj, &plan);
    bool keep = p->prog && same_run(&p->plan, &plan);
    if (!keep) {
        pod_reset(p, EP_WAIT);
        free(p->prog);
        p->prog = calloc(plan.n_containers ? plan.n_containers : 1, sizeof(*p->prog));
        for (size_t i = 0; p->prog && i < plan.n_containers; i++)
            p->prog[i].seen_ms = -1;
    }
    early_plan_clear(&p->plan);
    p->plan = plan;
    if (!p->prog) {
        pod_reset(p, EP_WAIT);
        return;
    }
    if (p->plan.fallback != EARLY_PROBE) {
        pod_fall_back(p);
        pod_reset(p, EP_FALLBACK);
        return;
    }
    bool leaving = p->plan.ip[0] && decide_leaving(p->plan.ip, e->leaving, e->n_leaving,
                                                   e->leaving_until_ms, clock_mono_ms());
    if (p->plan.deleting || !p->plan.ip[0] || leaving) {
        pod_reset(p, EP_WAIT);
        return;
    }
    if (p->plan.kubelet_ready) {
        /* the kubelet was first, or has caught up: its EndpointSlice takes over. A pod that
         * passed stays in the route until then (the slice may follow a moment later). */
        if (p->state == EP_PASSED) {
            run_cancel(p);
            if (p->tick)
                evtimer_del(p->tick);
            p->state = EP_KUBELET;
            p->kept = true;
        } else if (p->state != EP_KUBELET) {
            pod_reset(p, EP_KUBELET);
        }
        return;
    }
    if (p->state == EP_PASSED)
        return; /* its rechecks go on, on its timer */
    if (p->kept)
        pod_reset(p, EP_WAIT); /* Ready no more: probed again as a new start */
    p->state = EP_PROBING;
    pod_step(p);
}

static void pod_gone(struct early_set *s, const cJSON *obj)
{
    const char *name = json_str(json_get(obj, "metadata"), "name");
    for (struct early_pod **pp = &s->pods; name && *pp; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            struct early_pod *p = *pp;
            *pp = p->next;
            pod_free(p);
            return;
        }
    }
}

static void on_pod_add(const cJSON *obj, void *arg)
{
    pod_seen(arg, obj);
}

static void on_pod_update(const cJSON *old, const cJSON *obj, void *arg)
{
    (void)old;
    pod_seen(arg, obj);
}

static void on_pod_delete(const cJSON *obj, void *arg)
{
    pod_gone(arg, obj);
}

void early_stop(struct es *e)
{
    struct early_set *s = e->early;
    if (!s)
        return;
    e->early = NULL;
    informer_free(s->inf);
    while (s->pods) {
        struct early_pod *p = s->pods;
        s->pods = p->next;
        pod_free(p); /* out of the route, when it was in */
    }
    free(s);
    log_debug("early readiness: the pod watch ended", "elastiservice=%s", e->key);
}

/* Whether early readiness applies to e now: proxy mode, its spec valid and not opted out. */
static bool early_applies(const struct es *e)
{
    return e->mode == ES_MODE_PROXY && !e->deleting && !e->spec_error && e->spec.target_ok;
}

void early_begin(struct es *e)
{
    struct controller *c = e->c;
    if (e->early) {
        e->early->active_ms = clock_mono_ms();
        return;
    }
    if (!early_applies(e))
        return;
    if (!e->spec.early_readiness) {
        if (!e->early_off_said) {
            e->early_off_said = true;
            c->early_fallbacks[EARLY_FALLBACK_DISABLED]++;
        }
        return;
    }
    if (!e->wl_selector)
        return; /* the workload watch has not shown it yet: workload_selector begins it */
    struct early_set *s = calloc(1, sizeof(*s));
    if (!s)
        return;
    s->e = e;
    s->active_ms = clock_mono_ms();
    char name[320];
    snprintf(name, sizeof(name), "pods of %s", e->key);
    struct informer_opts o = {
        .res = RES_POD,
        .ns = e->ns,
        .label_selector = e->wl_selector,
        .backoff_max_ms = INFORMER_BACKOFF_MAX_MS,
        .name = name,
        .transform = lean_pod,
    };
    struct informer_handlers h = {on_pod_add, on_pod_update, on_pod_delete, NULL};
    s->inf = informer_new(c->kube, &o, &h, s);
    if (!s->inf) {
        free(s);
        return;
    }
    e->early = s;
    informer_start(s->inf);
    log_debug("early readiness: watching the target's pods", "elastiservice=%s selector=%s", e->key,
              e->wl_selector);
}

void early_sync(struct es *e)
{
    if (e->mode != ES_MODE_PROXY)
        e->early_off_said = false;
    if (e->early && (!early_applies(e) || !e->spec.early_readiness))
        early_stop(e);
}

void early_poll(struct es *e)
{
    struct early_set *s = e->early;
    if (!s)
        return;
    uint64_t now = clock_mono_ms();
    bool passed = false;
    for (struct early_pod *p = s->pods; p && !passed; p = p->next)
        passed = passed_pod(p);
    if ((e->svc && svc_state_held(e->svc) > 0) || passed)
        s->active_ms = now;
    else if (now - s->active_ms > EARLY_IDLE_MS)
        early_stop(e);
}

void early_selector_changed(struct es *e)
{
    if (!e->early && !(e->svc && svc_state_held(e->svc) > 0))
        return;
    early_stop(e);
    early_begin(e);
}

size_t early_endpoints(const struct es *e, const char *port_name, struct ready_endpoint **eps)
{
    *eps = NULL;
    if (!e->early)
        return 0;
    const struct service_cached *svc = es_service(e);
    const struct service_port *sp = NULL;
    for (size_t i = 0; svc && i < svc->n_ports && !sp; i++) {
        const char *n = svc->ports[i].name ? svc->ports[i].name : "";
        if (strcmp(n, port_name ? port_name : "") == 0)
            sp = &svc->ports[i];
    }
    if (!sp || !sp->has_port)
        return 0;
    size_t n = 0;
    for (const struct early_pod *p = e->early->pods; p; p = p->next) {
        if (!passed_pod(p))
            continue;
        unsigned port = early_plan_port(&p->plan, sp->target_port, sp->target_port_name, sp->port);
        struct ready_endpoint *grown = port ? realloc(*eps, (n + 1) * sizeof(**eps)) : NULL;
        if (!grown)
            continue;
        *eps = grown;
        snprintf(grown[n].ip, sizeof(grown[n].ip), "%s", p->plan.ip);
        grown[n++].port = port;
    }
    return n;
}
