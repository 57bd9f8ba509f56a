/*
 * dataplane: what resolver/dataplane.h promises that no other data-plane module does by
 * itself: publishing a snapshot with its listeners (which addresses the published routes name,
 * counted, so the last route to let go of one closes it), the few accessors the control planes
 * need on a service, route setters, and the data plane's metric families.
 */
#include "resolver/dataplane.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "resolver/probe.h"
#include "resolver/route.h"
#include "resolver/waitpage.h"
#include "resolver/wakeq.h"
#include "resolver/worker.h"

/* ---- lifecycle ---- */

void dp_limits_default(struct dp_limits *limits)
{
    *limits = (struct dp_limits){
        .max_held_connections = 50000,
        .max_held_bytes = 256 * 1024 * 1024,
        .hold_buffer_bytes = 64 * 1024,
        .max_head_bytes = 32 * 1024,
        .head_timeout_s = 30,
        .idle_timeout_s = 0,
        .connect_timeout_ms = 2000,
        .pace_held = true,
    };
}

void dataplane_set_stopping(struct dataplane *dp)
{
    atomic_store(&dp->stopping, true);
}

size_t dataplane_max_held_bytes(const struct dataplane *dp)
{
    return dp->limits.max_held_bytes;
}

/* ---- services ---- */

struct svc_state *dataplane_service(struct dataplane *dp, const char *ns, const char *name)
{
    return svc_registry_get(&dp->registry, ns, name);
}

const char *svc_state_ns(const struct svc_state *s)
{
    return s->ns;
}

const char *svc_state_name(const struct svc_state *s)
{
    return s->name;
}

const char *svc_state_key(const struct svc_state *s)
{
    return s->key;
}

long svc_state_held(const struct svc_state *s)
{
    return atomic_load(&((struct svc_state *)s)->held_conns);
}

void svc_state_mark_ready(struct svc_state *s, uint64_t since_ns)
{
    if (atomic_load(&s->held_conns) > 0)
        atomic_store(&s->ready_since_ns, (int64_t)since_ns);
}

uint64_t svc_state_wake_started_ns(const struct svc_state *s)
{
    int64_t t = atomic_load(&((struct svc_state *)s)->wake_started_ns);
    return t > 0 ? (uint64_t)t : 0;
}

uint64_t svc_state_first_byte_ns(const struct svc_state *s)
{
    int64_t t = atomic_load(&((struct svc_state *)s)->first_byte_ns);
    return t > 0 ? (uint64_t)t : 0;
}

void svc_state_observe_wake_to_scale(struct svc_state *s, uint64_t ns)
{
    struct svc_hists *h = svc_state_hists(s);
    if (h)
        hist_observe_ns(&h->wake_to_scale_seconds, ns);
}

/* ---- probeResponse rules ---- */

struct route_probes *route_probes_parse(const struct cJSON *array, const char *path, char *err,
                                        size_t errlen)
{
    struct probe_rules *rules = probe_rules_parse(array, path, err, errlen);
    if (!rules)
        return NULL;
    struct route_probes *p = route_probes_new(rules);
    if (!p)
        snprintf(err, errlen, "%s: out of memory", path);
    return p;
}

size_t route_probes_count(const struct route_probes *p)
{
    return p ? probe_rules_count(p->rules) : 0;
}

/* ---- routes ---- */

int route_service_set_port(struct route_service *r, size_t i, const char *name,
                           enum svc_protocol protocol, unsigned number,
                           const struct addr *endpoints, size_t n_endpoints)
{
    struct route_port *p = &r->ports[i];
    free(p->name);
    free(p->endpoints);
    p->name = strdup(name ? name : "");
    p->protocol = protocol;
    p->number = number;
    p->endpoints = calloc(n_endpoints ? n_endpoints : 1, sizeof(*p->endpoints));
    p->n_endpoints = 0;
    if (!p->name || !p->endpoints)
        return -1;
    if (n_endpoints)
        memcpy(p->endpoints, endpoints, n_endpoints * sizeof(*endpoints));
    p->n_endpoints = n_endpoints;
    return 0;
}

int route_service_add_listener(struct route_service *r, size_t port, const struct addr *addr)
{
    if (r->n_listeners == r->cap_listeners)
        return -1;
    struct route_listener *l = &r->listeners[r->n_listeners++];
    l->addr = *addr;
    l->port = port;
    return 0;
}

void route_service_set_limits(struct route_service *r, unsigned hold_timeout_s,
                              size_t max_connections, size_t max_bytes)
{
    r->hold_timeout_s = hold_timeout_s;
    r->max_held_connections = max_connections;
    r->max_held_bytes = max_bytes;
}

void route_service_set_probes(struct route_service *r, struct route_probes *probes)
{
    route_probes_unref(r->probes);
    r->probes = route_probes_ref(probes);
}

int route_service_set_waiting_page(struct route_service *r, const char *html, size_t html_len,
                                   unsigned retry_after_s)
{
    waitpage_free(r->page);
    r->page = waitpage_new(r->svc->ns, r->svc->name, html, html_len, retry_after_s);
    return r->page ? 0 : -1;
}

int route_service_set_reason(struct route_service *r, const char *reason)
{
    free(r->reason);
    r->reason = reason ? strdup(reason) : NULL;
    return reason && !r->reason ? -1 : 0;
}

bool route_service_has_endpoints(const struct route_service *r)
{
    for (size_t p = 0; p < r->n_ports; p++) {
        if (r->ports[p].n_endpoints > 0)
            return true;
    }
    return false;
}

size_t route_snapshot_services(const struct route_snapshot *s)
{
    return s->n_services;
}

/* ---- publishing ---- */

struct errors {
    struct dataplane_listen_error *v;
    size_t n, cap;
};

static void error_add(struct errors *e, struct svc_state *svc, const struct addr *addr,
                      const char *why)
{
    if (e->n == e->cap) {
        size_t ncap = e->cap ? e->cap * 2 : 4;
        struct dataplane_listen_error *grown = realloc(e->v, ncap * sizeof(*grown));
        if (!grown) {
            log_error("out of memory reporting a listener that could not be opened", "error=%s",
                      why);
            return;
        }
        e->v = grown;
        e->cap = ncap;
    }
    struct dataplane_listen_error *x = &e->v[e->n++];
    x->svc = svc ? svc_state_ref(svc) : NULL;
    x->addr = *addr;
    snprintf(x->why, sizeof(x->why), "%s", why);
}

/* One more published route names addr: the first opens it. False when it cannot be opened. */
static bool listen_hold(struct dataplane *dp, const struct addr *addr, char *why, size_t len)
{
    uintptr_t n = (uintptr_t)strmap_get(&dp->listen_routes, addr->text);
    if (n == 0 && dataplane_listen(dp, addr, why, len) < 0)
        return false;
    if (strmap_put(&dp->listen_routes, addr->text, (void *)(n + 1)) < 0)
        log_error("out of memory counting a listener; it stays open until restart", "address=%s",
                  addr->text);
    return true;
}

/* One published route fewer names addr: the last one lets the workers close it. */
static void listen_release(struct dataplane *dp, const struct addr *addr)
{
    uintptr_t n = (uintptr_t)strmap_get(&dp->listen_routes, addr->text);
    if (n > 1) {
        strmap_put(&dp->listen_routes, addr->text, (void *)(n - 1)); /* the key exists */
        return;
    }
    if (n == 1)
        strmap_del(&dp->listen_routes, addr->text);
    dataplane_unlisten(dp, addr);
}

/* Holds every listener of ls (n of them), leaving out the ones that cannot be opened (the
 * list is compacted in place: its route is not published yet). Returns how many stay. */
static size_t listeners_hold(struct dataplane *dp, struct route_listener *ls, size_t n,
                             struct svc_state *svc, struct errors *errs)
{
    size_t kept = 0;
    for (size_t k = 0; k < n; k++) {
        char why[256];
        if (!listen_hold(dp, &ls[k].addr, why, sizeof(why))) {
            error_add(errs, svc, &ls[k].addr, why);
            continue;
        }
        ls[kept++] = ls[k];
    }
    return kept;
}

void dataplane_publish(struct dataplane *dp, struct route_snapshot *s, uint64_t cause_ns,
                       struct dataplane_listen_error **errors, size_t *n_errors)
{
    struct errors errs = {0};
    struct route_snapshot *prev = route_table_acquire(&dp->routes);
    struct route_change *ch = NULL;
    long n = route_snapshot_diff(prev, s, &ch);
    if (n < 0) {
        /* Without the differences no listener can be counted: the previous snapshot stays,
         * and the control plane publishes again with its next change. */
        log_error("out of memory comparing route snapshots; the previous one stays", NULL);
        route_snapshot_unref(prev);
        route_snapshot_unref(s);
        *errors = NULL;
        *n_errors = 0;
        return;
    }
    /* The routes new in s were never published (a route is published once): their listener
     * lists may still change. */
    for (long i = 0; i < n; i++) {
        struct route_service *r = (struct route_service *)ch[i].is;
        if (r)
            r->n_listeners = listeners_hold(dp, r->listeners, r->n_listeners, r->svc, &errs);
    }
    s->n_listeners = listeners_hold(dp, s->listeners, s->n_listeners, NULL, &errs);
    s->cause_ns = cause_ns;
    route_table_publish(&dp->routes, route_snapshot_ref(s));
    /* What s no longer names: the workers let go as they apply it. */
    for (long i = 0; i < n; i++) {
        for (size_t k = 0; ch[i].was && k < ch[i].was->n_listeners; k++)
            listen_release(dp, &ch[i].was->listeners[k].addr);
    }
    for (size_t k = 0; prev && k < prev->n_listeners; k++)
        listen_release(dp, &prev->listeners[k].addr);
    free(ch);
    route_snapshot_unref(prev);
    route_snapshot_unref(s);
    *errors = errs.v;
    *n_errors = errs.n;
}

void dataplane_listen_errors_free(struct dataplane_listen_error *errors, size_t n)
{
    for (size_t i = 0; i < n; i++)
        svc_state_unref(errors[i].svc);
    free(errors);
}

/* ---- metrics ---- */

/* One pass over the services per metric family: the text format wants families contiguous. */
struct family_walk {
    struct mtext *out;
    const char *name;
    int which;
    int outcome;
};

enum {
    F_REQUESTS,
    F_HELD,
    F_HELD_BYTES,
    F_WAKES,
    F_RETRIES,
    F_WAITING_PAGES,
    F_PACE_WAITING,
    F_HOLD_HIST,
    F_COLD_HIST,
    F_READY_HIST,
    F_SCALE_HIST,
};

static bool hist_used(const struct hist *h)
{
    if (atomic_load(&h->inf))
        return true;
    for (size_t i = 0; i < HIST_NBUCKETS; i++) {
        if (atomic_load(&h->buckets[i]))
            return true;
    }
    return false;
}

/*
 * A service's series appear once something happened to it (a request, a wake, a connection
 * held, a retry), as a labelled child of a client library appears on first use. A cluster of
 * 10,000 ElastiServices most of which never see traffic at zero would otherwise export 7.6 KB of
 * zeros for each: 76 MB a scrape.
 */
/* What a histogram not allocated yet reads as (svc_state_hists_peek): all zeros. */
static const struct hist no_hist;

static bool svc_used(struct svc_state *s)
{
    const struct svc_hists *h = svc_state_hists_peek(s);
    for (int o = 0; o < OUTCOME_COUNT; o++) {
        if (counter_get(&s->requests[o]))
            return true;
    }
    return counter_get(&s->wakes) || counter_get(&s->connect_retries) ||
           counter_get(&s->waiting_pages) || atomic_load(&s->held_conns) ||
           atomic_load(&s->held_bytes) ||
           (h &&
            (hist_used(&h->hold_seconds) || hist_used(&h->cold_start_seconds) ||
             hist_used(&h->ready_to_first_byte_seconds) || hist_used(&h->wake_to_scale_seconds)));
}

static void family_sample(struct svc_state *s, void *arg)
{
    struct family_walk *f = arg;
    char svc_labels[SVC_LABELS_MAX], labels[700];
    if (!svc_used(s))
        return;
    svc_state_labels(s, svc_labels, sizeof(svc_labels));
    const struct svc_hists *h = svc_state_hists_peek(s);
    switch (f->which) {
    case F_REQUESTS:
        for (int o = 0; o < OUTCOME_COUNT; o++) {
            snprintf(labels, sizeof(labels), "%s,outcome=\"%s\"", svc_labels, outcome_names[o]);
            mtext_sample(f->out, f->name, labels, (double)counter_get(&s->requests[o]));
        }
        break;
    case F_HELD:
        mtext_sample(f->out, f->name, svc_labels, (double)atomic_load(&s->held_conns));
        break;
    case F_HELD_BYTES:
        mtext_sample(f->out, f->name, svc_labels, (double)atomic_load(&s->held_bytes));
        break;
    case F_WAKES:
        mtext_sample(f->out, f->name, svc_labels, (double)counter_get(&s->wakes));
        break;
    case F_RETRIES:
        mtext_sample(f->out, f->name, svc_labels, (double)counter_get(&s->connect_retries));
        break;
    case F_WAITING_PAGES:
        mtext_sample(f->out, f->name, svc_labels, (double)counter_get(&s->waiting_pages));
        break;
    case F_PACE_WAITING:
        mtext_sample(f->out, f->name, svc_labels, (double)atomic_load(&s->pace_waiting));
        break;
    case F_HOLD_HIST:
        mtext_hist(f->out, f->name, svc_labels, h ? &h->hold_seconds : &no_hist);
        break;
    case F_COLD_HIST:
        mtext_hist(f->out, f->name, svc_labels, h ? &h->cold_start_seconds : &no_hist);
        break;
    case F_READY_HIST:
        mtext_hist(f->out, f->name, svc_labels, h ? &h->ready_to_first_byte_seconds : &no_hist);
        break;
    case F_SCALE_HIST:
        mtext_hist(f->out, f->name, svc_labels, h ? &h->wake_to_scale_seconds : &no_hist);
        break;
    }
}

static void service_family(struct dataplane *dp, struct mtext *out, const char *name,
                           const char *type, const char *help, int which)
{
    mtext_family(out, name, type, help);
    struct family_walk f = {.out = out, .name = name, .which = which};
    svc_registry_each(&dp->registry, family_sample, &f);
}

void dataplane_metrics(struct mtext *out, struct dataplane *dp, uint64_t admin_fd_exhausted)
{
    service_family(dp, out, "holdfast_requests_total", "counter",
                   "Requests (connections, for unparsed protocols) by how they ended.", F_REQUESTS);
    service_family(dp, out, "holdfast_held_connections", "gauge",
                   "Connections held now, waiting for a ready backend.", F_HELD);
    service_family(dp, out, "holdfast_held_bytes", "gauge",
                   "Request bytes buffered for held connections now.", F_HELD_BYTES);
    service_family(dp, out, "holdfast_wakes_total", "counter",
                   "Wakes signalled to the control plane.", F_WAKES);
    service_family(dp, out, "holdfast_upstream_connect_retries_total", "counter",
                   "Backend connect attempts that failed and were retried.", F_RETRIES);
    service_family(dp, out, "holdfast_waiting_pages_total", "counter",
                   "Browser navigations answered with the waiting page while not ready.",
                   F_WAITING_PAGES);
    service_family(dp, out, "holdfast_pace_waiting_connections", "gauge",
                   "Held connections of a ready service waiting for a pacing slot now.",
                   F_PACE_WAITING);
    service_family(dp, out, "holdfast_hold_duration_seconds", "histogram",
                   "Time connections spent held.", F_HOLD_HIST);
    service_family(dp, out, "holdfast_cold_start_seconds", "histogram",
                   "Time from a wake to the first held byte written to a backend.", F_COLD_HIST);
    service_family(dp, out, "holdfast_ready_to_first_byte_seconds", "histogram",
                   "Time from the control plane learning of a ready endpoint to the first held "
                   "byte written to it.",
                   F_READY_HIST);
    service_family(dp, out, "holdfast_wake_to_scale_seconds", "histogram",
                   "Time from the first held request to the scale-up call answered (Kubernetes "
                   "mode).",
                   F_SCALE_HIST);

    mtext_family(out, "holdfast_connections_accepted_total", "counter",
                 "Client connections accepted.");
    mtext_sample(out, "holdfast_connections_accepted_total", NULL,
                 (double)counter_get(&dp->accepted));
    mtext_family(out, "holdfast_open_connections", "gauge", "Client connections open now.");
    mtext_sample(out, "holdfast_open_connections", NULL, (double)atomic_load(&dp->open_conns));
    mtext_family(out, "holdfast_accept_fd_exhausted_total", "counter",
                 "Times accepting paused because the process ran out of file descriptors, by "
                 "listener (data: the services' listeners, admin: this endpoint).");
    mtext_sample(out, "holdfast_accept_fd_exhausted_total", "listener=\"data\"",
                 (double)counter_get(&dp->fd_exhausted));
    mtext_sample(out, "holdfast_accept_fd_exhausted_total", "listener=\"admin\"",
                 (double)admin_fd_exhausted);
    mtext_family(out, "holdfast_unknown_host_total", "counter",
                 "Shared-port requests whose Host named no known service (404).");
    mtext_sample(out, "holdfast_unknown_host_total", NULL, (double)counter_get(&dp->unknown_host));
    mtext_family(out, "holdfast_bad_requests_unrouted_total", "counter",
                 "Malformed requests on the shared port before a service was known.");
    mtext_sample(out, "holdfast_bad_requests_unrouted_total", NULL,
                 (double)counter_get(&dp->bad_requests));
    mtext_family(out, "holdfast_listen_errors_total", "counter",
                 "Listener addresses a worker could not open.");
    mtext_sample(out, "holdfast_listen_errors_total", NULL,
                 (double)counter_get(&dp->listen_errors));
    mtext_family(out, "holdfast_probe_regex_limit_total", "counter",
                 "Requests whose probeResponse matching gave up (the request's work budget "
                 "spent, or a PCRE2 limit): the conditions left counted as not holding.");
    mtext_sample(out, "holdfast_probe_regex_limit_total", NULL,
                 (double)counter_get(&dp->regex_limit_hits));
    mtext_family(out, "holdfast_datapath_probes_total", "counter",
                 "Data-path probes (a Holdfast-Probe request field with a valid nonce) this "
                 "replica answered itself: the leader checking that a Service's traffic reaches "
                 "holdfast before it removes the last replica.");
    mtext_sample(out, "holdfast_datapath_probes_total", NULL,
                 (double)counter_get(&dp->datapath_probes));
    mtext_family(out, "holdfast_held_connections_all", "gauge",
                 "Connections held now, all services together.");
    mtext_sample(out, "holdfast_held_connections_all", NULL, (double)atomic_load(&dp->held_conns));
    mtext_family(out, "holdfast_held_bytes_all", "gauge",
                 "Request bytes buffered for held connections now, all services together.");
    mtext_sample(out, "holdfast_held_bytes_all", NULL, (double)atomic_load(&dp->held_bytes));
    mtext_family(out, "holdfast_route_update_seconds", "histogram",
                 "Time from a change the control plane saw (Service, EndpointSlice, "
                 "ElastiService, wake) to the route snapshot carrying it applied by a worker "
                 "(one observation per worker).");
    mtext_hist(out, "holdfast_route_update_seconds", NULL, &dp->route_update_seconds);
    mtext_family(out, "holdfast_draining", "gauge", "1 while the process drains after SIGTERM.");
    mtext_sample(out, "holdfast_draining", NULL, atomic_load(&dp->draining) ? 1 : 0);
}

/* ---- the wake queue ---- */

void dataplane_wake_notify(struct dataplane *dp, struct event *ev)
{
    wakeq_set_notify(&dp->wakeq, ev);
}

struct wake_msg *dataplane_wakes_take(struct dataplane *dp)
{
    return wakeq_take_all(&dp->wakeq);
}
