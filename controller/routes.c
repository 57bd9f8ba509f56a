/*
 * routes: the route snapshots the controller publishes to the data plane. Every ElastiService
 * has one route_service (its resolver ports and Host, its Service's endpoints, probe rules,
 * waiting page, hold limits, why its woken target is not ready), built again only when marked
 * (route_mark, routes_changed): a publish builds the marked ones and shares the others' with the
 * snapshot before, so a change costs one route, not 10,000. Publishing opens the listeners the new
 * routes need; one that cannot be opened is retried in 1 s (routes_on_relisten). This is the
 * controller's only user of the data plane's route builder (resolver/dataplane.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "controller/es.h"

/* Starts with `prefix` followed by nothing or a '-' ("tcp", "tcp-db"), case-insensitive. */
static bool has_prefix(const char *s, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncasecmp(s, prefix, n) == 0 && (s[n] == '\0' || s[n] == '-');
}

/*
 * How a Service port's held connections are treated: HTTP/1 (probes answered; h2c and TLS
 * still detected) unless its appProtocol, or else its name's prefix, says the bytes are not
 * HTTP (Istio's port naming convention): then they are held opaque and woken on accept.
 */
enum svc_protocol routes_port_protocol(const struct service_cached *service, const char *port_name)
{
    static const char *const opaque[] = {
        "tcp",   "tls",     "https", "mysql", "postgres",          "postgresql", "redis",
        "mongo", "mongodb", "amqp",  "kafka", "kubernetes.io/wss", "udp",        NULL};
    for (size_t k = 0; service && k < service->n_ports; k++) {
        const char *pn = service->ports[k].name;
        if (strcmp(pn ? pn : "", port_name) != 0)
            continue;
        const char *app = service->ports[k].app_protocol;
        const char *what = app && *app ? app : port_name;
        for (size_t i = 0; opaque[i]; i++) {
            if (has_prefix(what, opaque[i]))
                return PROTO_TCP;
        }
        return PROTO_HTTP;
    }
    return PROTO_HTTP;
}

/*
 * Marks e's route to be built again at the next publish, and schedules it. Every change to
 * what a route is built from goes through here: the ElastiService (spec, status.ports), its
 * Service, its EndpointSlices, the reason its target is not ready.
 */
static void route_mark(struct es *e)
{
    struct controller *c = e->c;
    if (e->route_dirty)
        return;
    e->route_dirty = true;
    e->dirty_prev = NULL;
    e->dirty_next = c->dirty;
    if (c->dirty)
        c->dirty->dirty_prev = e;
    c->dirty = e;
}

void routes_changed(struct es *e)
{
    route_mark(e);
    routes_schedule(e->c);
}

static void dirty_unlink(struct es *e)
{
    struct controller *c = e->c;
    if (!e->route_dirty)
        return;
    if (e->dirty_prev)
        e->dirty_prev->dirty_next = e->dirty_next;
    else
        c->dirty = e->dirty_next;
    if (e->dirty_next)
        e->dirty_next->dirty_prev = e->dirty_prev;
    e->dirty_prev = e->dirty_next = NULL;
    e->route_dirty = false;
}

/* e is freed: its route leaves the snapshots at the next publish. */
void routes_forget(struct es *e)
{
    struct controller *c = e->c;
    dirty_unlink(e);
    if (!e->route_slotted) {
        route_service_unref(e->route);
        e->route = NULL;
        return;
    }
    if (c->n_gone == c->cap_gone) {
        size_t ncap = c->cap_gone ? c->cap_gone * 2 : 16;
        struct route_gone *grown = realloc(c->gone, ncap * sizeof(*grown));
        if (!grown) {
            /* out of memory: the route stays published (its service's held connections are
             * answered at their hold timeout), and its slot is not used again */
            log_error("out of memory removing a route; it stays until restart", "elastiservice=%s",
                      e->key);
            route_service_unref(e->route);
            e->route = NULL;
            return;
        }
        c->gone = grown;
        c->cap_gone = ncap;
    }
    c->gone[c->n_gone++] = (struct route_gone){e->route_slot, e->route};
    e->route = NULL;
    e->route_slotted = false;
    if (c->publish_ev)
        routes_schedule(c);
}

static void slot_release(struct controller *c, size_t slot)
{
    if (c->n_free_slots == c->cap_free_slots) {
        size_t ncap = c->cap_free_slots ? c->cap_free_slots * 2 : 64;
        size_t *grown = realloc(c->free_slots, ncap * sizeof(*grown));
        if (!grown)
            return; /* the slot is not used again */
        c->free_slots = grown;
        c->cap_free_slots = ncap;
    }
    c->free_slots[c->n_free_slots++] = slot;
}

static size_t slot_take(struct controller *c)
{
    return c->n_free_slots ? c->free_slots[--c->n_free_slots] : c->next_slot++;
}

/* Appends to eps (n of them) the pods early readiness passed (early.c) that the slices do not
 * list already; returns the count. Out of memory: eps as it was. */
static size_t add_early(const struct es *e, const char *port_name, struct ready_endpoint **eps,
                        size_t n)
{
    struct ready_endpoint *early = NULL;
    size_t ne = early_endpoints(e, port_name, &early);
    for (size_t i = 0; i < ne; i++) {
        bool listed = false;
        for (size_t k = 0; k < n && !listed; k++)
            listed = (*eps)[k].port == early[i].port && strcmp((*eps)[k].ip, early[i].ip) == 0;
        struct ready_endpoint *grown = listed ? NULL : realloc(*eps, (n + 1) * sizeof(**eps));
        if (!grown)
            continue;
        *eps = grown;
        grown[n++] = early[i];
    }
    free(early);
    return n;
}

/*
 * Builds e's route from the caches: its ports, their protocol and ready endpoints (and the pods
 * early readiness passed), its limits and reason, and a listener for every resolver port
 * (opened when the snapshot is published).
 * NULL when e has no route (no ports yet, or no service state), or when out of memory (*retry
 * set).
 */
static struct route_service *es_route_build(struct controller *c, struct es *e, bool *retry)
{
    *retry = false;
    if (!e->n_ports || !e->svc)
        return NULL;
    c->routes_built++;
    struct route_service *r = route_service_new(svc_state_ref(e->svc), e->n_ports, e->n_ports);
    if (!r || route_service_set_reason(r, e->not_ready_reason) < 0) {
        route_service_unref(r);
        *retry = true;
        return NULL;
    }
    route_service_set_probes(r, e->spec.probes);
    route_service_set_limits(r, e->spec.hold_timeout_s, e->spec.max_held,
                             dataplane_max_held_bytes(c->dp));
    const struct waiting_page_spec *page = &e->spec.waiting_page;
    if (page->enabled &&
        route_service_set_waiting_page(r, page->html, page->html_len, page->retry_after_s) < 0) {
        route_service_unref(r);
        *retry = true;
        return NULL;
    }
    for (size_t p = 0; p < e->n_ports; p++) {
        struct ready_endpoint *eps = NULL;
        size_t n = es_ready_endpoints(e, e->ports[p].name, &eps);
        n = add_early(e, e->ports[p].name, &eps, n);
        struct addr *addrs = calloc(n ? n : 1, sizeof(*addrs));
        size_t n_addrs = 0;
        for (size_t k = 0; addrs && k < n; k++) {
            char text[ADDR_TEXT_MAX], err[128];
            addr_format(text, sizeof(text), eps[k].ip, eps[k].port);
            if (addr_parse(text, &addrs[n_addrs], err, sizeof(err)) == 0)
                n_addrs++;
        }
        free(eps);
        int rc = addrs
                     ? route_service_set_port(r, p, e->ports[p].name,
                                              routes_port_protocol(es_service(e), e->ports[p].name),
                                              e->ports[p].port, addrs, n_addrs)
                     : -1;
        free(addrs);
        if (rc < 0) {
            route_service_unref(r);
            *retry = true;
            return NULL;
        }
        char ltext[ADDR_TEXT_MAX], err[128];
        struct addr listen;
        addr_format(ltext, sizeof(ltext), c->opt.bind_address, e->ports[p].resolver_port);
        if (addr_parse(ltext, &listen, err, sizeof(err)) == 0)
            route_service_add_listener(r, p, &listen);
    }
    /* Ready endpoints appeared for a service with held connections: the data plane measures
     * from the informer's event to the first held byte written. */
    bool has_endpoints = route_service_has_endpoints(r);
    if (has_endpoints && !e->had_endpoints)
        svc_state_mark_ready(e->svc, c->last_change_ns);
    e->had_endpoints = has_endpoints;
    return r;
}

/* Lets go of routes no longer published (the data plane closes the listeners no published
 * route names any more). */
static void routes_release(struct controller *c, struct route_service **old, size_t n)
{
    for (size_t i = 0; i < n; i++)
        route_service_unref(old[i]);
}

/*
 * Listeners the last publish could not open (taken by another process, or not yet let go):
 * their routes are built again, and so opened again, every second (said at most that often),
 * not only when something else changes. The shared port is said once.
 */
static void listen_errors(struct controller *c, struct dataplane_listen_error *errs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!errs[i].svc) {
            if (!c->shared_port_failed)
                log_error("cannot listen on the shared port", "error=%s", errs[i].why);
            c->shared_port_failed = true;
            continue;
        }
        struct es *e = es_find(c, svc_state_ns(errs[i].svc), svc_state_name(errs[i].svc));
        if (e)
            route_mark(e);
        if (!evtimer_pending(c->relisten_ev, NULL)) {
            log_error("cannot listen on a resolver port; retrying every second",
                      "elastiservice=%s error=%s", e ? e->key : svc_state_key(errs[i].svc),
                      errs[i].why);
            struct timeval tv = {1, 0};
            evtimer_add(c->relisten_ev, &tv);
        }
    }
    dataplane_listen_errors_free(errs, n);
}

/*
 * Publishes a snapshot derived from the last one: the routes of freed ElastiServices leave,
 * those marked by routes_changed are built again, every other route is shared as it is. The
 * cost is O(changed routes), plus O(N / ROUTE_CHUNK) to share the rest.
 */
void routes_on_publish(evutil_socket_t fd, short what, void *arg)
{
    struct controller *c = arg;
    uint64_t started = clock_mono_ns();
    struct route_snapshot *snap = route_snapshot_derive(c->snap);
    size_t n_old = 0, cap_old = c->n_gone;
    for (struct es *e = c->dirty; e; e = e->dirty_next)
        cap_old++;
    struct route_service **old = calloc(cap_old ? cap_old : 1, sizeof(*old));
    if (!snap || !old) {
        route_snapshot_unref(snap);
        free(old);
        log_error("out of memory building a route snapshot; retrying", NULL);
        routes_schedule(c);
        return;
    }
    size_t n_gone = c->n_gone, kept = 0;
    for (size_t i = 0; i < n_gone; i++) {
        if (route_snapshot_put(snap, c->gone[i].slot, NULL) < 0) {
            /* the chunk could not be copied: this one stays for the next publish */
            c->gone[kept++] = c->gone[i];
            continue;
        }
        old[n_old++] = c->gone[i].route;
        slot_release(c, c->gone[i].slot);
    }
    c->n_gone = kept;
    /* built with a listener missing (again when relisten_ev fires), or out of memory (again
     * at once): marked again once this publish is done */
    struct es *retry = NULL;
    bool oom = false;
    size_t built = 0;
    struct es *e;
    while ((e = c->dirty)) {
        dirty_unlink(e);
        bool again = false;
        struct route_service *r = es_route_build(c, e, &again);
        built += r != NULL;
        oom = oom || (again && !evtimer_pending(c->relisten_ev, NULL));
        if (again) {
            e->dirty_next = retry;
            retry = e;
        }
        if (!r && !e->route_slotted)
            continue;
        if (!e->route_slotted) {
            e->route_slot = slot_take(c);
            e->route_slotted = true;
        }
        if (route_snapshot_put(snap, e->route_slot, route_service_ref(r)) < 0) {
            log_error("out of memory publishing a route; retrying", "elastiservice=%s", e->key);
            struct route_service *lost = r;
            routes_release(c, &lost, 1);
            oom = true;
            if (!again) {
                e->dirty_next = retry;
                retry = e;
            }
            continue;
        }
        old[n_old++] = e->route;
        e->route = r;
        if (!r) {
            slot_release(c, e->route_slot);
            e->route_slotted = false;
        }
    }
    while ((e = retry)) {
        retry = e->dirty_next;
        e->dirty_next = NULL;
        route_mark(e);
    }
    if (c->n_gone || oom)
        routes_schedule(c);
    if (c->opt.shared_port) {
        /* The shared port routes by Host (KubeElasti's way), for every service in proxy mode. */
        char ltext[ADDR_TEXT_MAX], err[128];
        struct addr shared;
        addr_format(ltext, sizeof(ltext), c->opt.bind_address, c->opt.shared_port);
        if (addr_parse(ltext, &shared, err, sizeof(err)) < 0 ||
            route_snapshot_add_shared(snap, &shared) < 0)
            log_error("cannot list the shared port", "address=%s", ltext);
    }
    uint64_t cause_ns = c->change_ns;
    c->change_ns = 0;
    log_debug("route snapshot published", "services=%zu built=%zu removed=%zu build_ms=%f",
              route_snapshot_services(snap), built, n_gone,
              (double)(clock_mono_ns() - started) / 1e6);
    route_snapshot_unref(c->snap);
    c->snap = route_snapshot_ref(snap);
    struct dataplane_listen_error *errs;
    size_t n_errs;
    dataplane_publish(c->dp, snap, cause_ns, &errs, &n_errs);
    listen_errors(c, errs, n_errs);
    if (!c->routed && informer_synced(c->inf_es) && informer_synced(c->inf_svc) &&
        informer_synced(c->inf_slices) && (!c->inf_resolver || informer_synced(c->inf_resolver))) {
        c->routed = true;
        log_info("caches synced and routes published: ready for traffic", NULL);
    }
    /* The routes this snapshot replaced. */
    routes_release(c, old, n_old);
    free(old);
}

void routes_on_relisten(evutil_socket_t fd, short what, void *arg)
{
    routes_schedule(arg);
}

void routes_schedule(struct controller *c)
{
    if (!c->change_ns)
        c->change_ns = clock_mono_ns();
    static const struct timeval now = {0, 0};
    event_add(c->publish_ev, &now);
}

/*
 * Publishes e's marked route now, not on the loop's next turn: holdfast listens on a resolver
 * port before any write names it (a resolver EndpointSlice, status.ports). The sockets are
 * bound and listening when this returns; a connection that comes before a worker applies the
 * snapshot waits in the listen backlog. (Found on the real control plane: status and slice
 * were written on one turn, the route published on the next, the thread was preempted 47 ms
 * in between, and a connection that followed the slice was refused.)
 */
void routes_publish_now(struct es *e)
{
    if (!e->route_dirty || !e->c->publish_ev)
        return;
    event_del(e->c->publish_ev);
    routes_on_publish(-1, 0, e->c);
}
