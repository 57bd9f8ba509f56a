/*
 * switch: the traffic switches of an ElastiService (leader). switch_enter_proxy and proxy_commit
 * take it to proxy mode (ports allocated, resolver slices written, KEDA paused, the target scaled
 * to zero, status and Event); switch_enter_serve takes it back to serve (resolver slices deleted).
 * A scale to zero of holdfast's own first shows that the data path reaches holdfast (the switch to
 * zero: a probe through the ClusterIP, or a grace period) and abandons the attempt when it cannot.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/es.h"

/* ---- mode transitions (leader) ---- */

static void switch_begin(struct es *e, const char *why);

/*
 * serve -> proxy. A hand scale to zero (scale_down false) cannot be preceded by anything: the
 * resolver slice goes in at once. Holdfast's own scale-down first shows that the data path
 * reaches holdfast (switch_begin), and only then removes the last replica (proxy_commit).
 */
static void proxy_commit(struct es *e, bool scale_down, const char *why);

void switch_enter_proxy(struct es *e, bool scale_down, const char *why)
{
    if (!es_allocate_ports(e)) {
        es_cond_set(e, "Ready", false, "PortAllocationFailed", es_text(e->spec_error));
        es_status_sync(e, false);
        return;
    }
    if (scale_down) {
        switch_begin(e, why);
        return;
    }
    switch_cancel(e); /* by hand meanwhile: nothing left to wait for */
    proxy_commit(e, false, why);
}

/*
 * The answer to holdfast's own scale to zero. A /scale read sent before it may still show the
 * old count, and the terminating pods are still ready endpoints for a moment: acted on, that
 * read switched straight back to serve, and the watch's zero then looked like a hand scale (found
 * on the real control plane, 2 of 50 cycles; kubesim removed the pods with the scale). So the
 * epoch moves when the patch is sent and again when it is answered: only reads sent after the
 * answer count. A failed patch is retried by the next read, which shows the pods still wanted.
 */
static void on_scaled_down(const struct target_result *res, const struct kube_error *err, void *arg)
{
    struct es *e = es_ref_take(arg);
    if (e) {
        e->scale_epoch++;
        if (err)
            e->n_leaving = 0; /* the pods stay: the read that retries it may switch back to them */
    }
    es_on_target_done(res, err, "scale to zero");
}

static void proxy_commit(struct es *e, bool scale_down, const char *why)
{
    es_set_mode(e, ES_MODE_PROXY, why);
    routes_changed(e); /* published by resolver_slices_apply before the slice is written */
    resolver_slices_apply(e);
    es_keda_set(e, true);
    if (scale_down) {
        e->scale_epoch++;
        struct es_ref *ref = es_ref_new(e);
        if (ref && !target_scale_to(e->c->kube, &e->spec.target, e->ns, 0, on_scaled_down, ref))
            es_ref_take(ref);
        wakewith_sleep(e); /* its spec.wakeWith members go with it */
    }
    es_cond_set(e, "ScaledToZero", true, scale_down ? "BelowThreshold" : "ScaledToZeroByHand", why);
    es_cond_set(e, "Ready", true, "Proxying", "traffic goes to the resolver, which holds requests");
    es_status_sync(e, true);
    es_event(e, false, "ScaledToZero", why);
    e->c->scale_downs++;
}

void switch_enter_serve(struct es *e)
{
    char endpoint[96] = "";
    es_has_ready_endpoint(e, endpoint, sizeof(endpoint));
    log_info("switching to serve", "elastiservice=%s endpoint=%s", e->key, endpoint);
    es_set_mode(e, ES_MODE_SERVE, "the target has ready endpoints");
    resolver_slices_delete(e);
    wakewith_wake(e); /* scaled up by another hand than a wake's: its members follow it */
    routes_changed(e);
    es_cond_set(e, "ScaleUpFailed", false, "Serving", "");
    es_cond_set(e, "ScaledToZero", false, "Serving", "the target has ready endpoints");
    es_cond_set(e, "Ready", true, "Serving", "traffic goes to the target's pods");
    es_status_sync(e, true);
    es_event(e, false, "SwitchedToServe", "the target has ready endpoints");
    e->c->switches++;
    coldstart_on_serve(e, endpoint); /* its record follows the pod list: a ColdStart Event */
}

/* ---- the switch to zero: the data path first (leader) ---- */

/*
 * Holdfast removes the last replica only once the Service's traffic is shown to reach a holdfast
 * replica; before, every request of the window between the scale call and kube-proxy routing
 * to the resolver went to a pod on its way out (issue 10: 200 of 200 reset with kube-proxy at
 * 800 ms). With the resolver slice written and the pods still up:
 *
 *   - a Service with an HTTP port: a probe through the ClusterIP every SWITCH_PROBE_EVERY_MS,
 *     each with a fresh nonce (controller/pathprobe.h); a holdfast replica answers it itself,
 *     a pod does not know the nonce. The first echo proves kube-proxy routes the Service to a
 *     resolver (it programs a Service's endpoints as one set, every port at once);
 *   - only opaque ports (tcp, tls, ...): nothing can be asked, so a grace period
 *     (--scale-down-grace-period) from when the informer shows the resolver slice;
 *   - neither within --scale-down-probe-timeout (a NetworkPolicy that keeps holdfast's probe
 *     out, a mesh or CNI that ignores hand-made slices): the attempt is abandoned, the resolver
 *     slice deleted, condition ScaledToZero=False DataPathUnverified, a Warning Event, and no
 *     new attempt for max(10 polling intervals, 2 probe timeouts).
 *
 * While it waits: status.mode stays serve, condition ScaledToZero=False AwaitingDataPath, the
 * pods stay up, and traffic that reaches holdfast is relayed to them.
 */
#define SWITCH_PROBE_EVERY_MS 100

static uint64_t switch_timeout_ms(const struct controller *c)
{
    return c->opt.scale_down_probe_timeout_ms ? c->opt.scale_down_probe_timeout_ms
                                              : CONTROLLER_DEFAULT_SCALE_DOWN_PROBE_TIMEOUT_MS;
}

static uint64_t switch_grace_ms(const struct controller *c)
{
    return c->opt.scale_down_grace_ms;
}

/* The Service's ClusterIP and its first HTTP port (by routes_port_protocol), or false. */
static bool switch_probe_target(const struct es *e, char *ip, size_t iplen, unsigned *port)
{
    const struct service_cached *svc = es_service(e);
    const char *cip = svc ? svc->cluster_ip : NULL;
    if (!cip || !*cip || strcmp(cip, "None") == 0)
        return false;
    for (size_t k = 0; k < svc->n_ports; k++) {
        const struct service_port *p = &svc->ports[k];
        const char *pn = p->name, *proto = p->protocol;
        if ((proto && strcmp(proto, "TCP") != 0) || !p->has_port ||
            routes_port_protocol(svc, pn ? pn : "") != PROTO_HTTP)
            continue;
        snprintf(ip, iplen, "%s", cip);
        *port = p->port;
        return true;
    }
    return false;
}

static void switch_arm(struct es *e, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    if (e->switch_ev)
        evtimer_add(e->switch_ev, &tv);
}

/* Stops an attempt without a word (the leadership went, the ElastiService went, a hand). */
void switch_cancel(struct es *e)
{
    if (e->probe)
        pathprobe_cancel(e->probe);
    e->probe = NULL;
    if (e->switch_ev)
        event_free(e->switch_ev);
    e->switch_ev = NULL;
    e->switching = false;
}

static void switch_abandon(struct es *e)
{
    struct controller *c = e->c;
    char msg[768];
    snprintf(msg, sizeof(msg),
             "scale to zero abandoned: after %.1f s and %u probes, the Service's traffic was not "
             "shown to reach holdfast (last: %s); the pods stay up. A NetworkPolicy that keeps "
             "the probe out, or a mesh or CNI that ignores hand-made EndpointSlices, does this. "
             "Tried again later",
             (double)(clock_mono_ms() - e->switch_started_ms) / 1000.0, e->switch_probes,
             e->switch_last ? e->switch_last : "no probe answered");
    unsigned probes = e->switch_probes;
    switch_cancel(e);
    uint64_t wait = 10 * (uint64_t)c->opt.polling_interval_ms;
    if (wait < 2 * switch_timeout_ms(c))
        wait = 2 * switch_timeout_ms(c);
    e->switch_retry_ms = clock_mono_ms() + wait;
    resolver_slices_delete(e);
    es_cond_set(e, "ScaledToZero", false, "DataPathUnverified", msg);
    es_status_sync(e, true);
    es_event(e, true, "ScaleDownAbandoned", msg);
    log_warn("scale to zero abandoned: the data path was not shown to reach holdfast",
             "elastiservice=%s probes=%u last=%s retry_in_s=%f", e->key, probes,
             es_text(e->switch_last), (double)wait / 1000.0);
    c->abandoned++;
}

static void switch_done(struct es *e, const char *how)
{
    uint64_t waited = clock_mono_ms() - e->switch_started_ms;
    if (e->switch_probes > 1 && waited > e->c->propagation_ms)
        e->c->propagation_ms = waited; /* a probe missed first: this measured the propagation */
    char why[256];
    snprintf(why, sizeof(why), "%s", es_text(e->switch_why));
    unsigned probes = e->switch_probes;
    switch_cancel(e);
    log_info("data path reaches holdfast: removing the last replica",
             "elastiservice=%s how=%s waited_ms=%llu probes=%u", e->key, how,
             (unsigned long long)waited, probes);
    proxy_commit(e, true, why);
}

static void on_switch_probe(const struct pathprobe_answer *a, void *arg)
{
    struct es *e = arg; /* switch_cancel (es_free, leadership, a hand) cancels the probe */
    e->probe = NULL;
    if (a->result == PATHPROBE_HOLDFAST) {
        switch_done(e, "probe");
        return;
    }
    es_text_setf(&e->switch_last, 256, "%s: %s", pathprobe_result_name(a->result),
                 a->detail ? a->detail : "");
    if (clock_mono_ms() - e->switch_started_ms >= switch_timeout_ms(e->c)) {
        switch_abandon(e);
        return;
    }
    switch_arm(e, SWITCH_PROBE_EVERY_MS);
}

static void on_switch_timer(evutil_socket_t fd, short what, void *arg)
{
    struct es *e = arg;
    struct controller *c = e->c;
    uint64_t now = clock_mono_ms();
    if (!c->leader) {
        switch_cancel(e);
        return;
    }
    char ip[64];
    unsigned port = 0;
    if (!switch_probe_target(e, ip, sizeof(ip), &port)) {
        /* Only opaque ports: the grace period runs from when the slice is in the cache. */
        if (!e->switch_probes && !es_resolver_slice_cached(e)) {
            if (now - e->switch_started_ms >= switch_timeout_ms(c)) {
                es_text_setf(&e->switch_last, 256,
                             "the resolver EndpointSlice never reached the cache");
                switch_abandon(e);
            } else {
                switch_arm(e, SWITCH_PROBE_EVERY_MS);
            }
            return;
        }
        if (!e->switch_probes) {
            e->switch_probes = 1; /* marks the grace period as begun */
            switch_arm(e, switch_grace_ms(c));
            return;
        }
        switch_done(e, "grace period");
        return;
    }
    if (now - e->switch_started_ms >= switch_timeout_ms(c)) {
        switch_abandon(e);
        return;
    }
    char nonce[PATHPROBE_NONCE_NEW_LEN + 1];
    if (pathprobe_nonce_new(nonce, sizeof(nonce)) < 0) {
        es_text_setf(&e->switch_last, 256, "no random nonce: %s", strerror(errno));
        switch_arm(e, SWITCH_PROBE_EVERY_MS);
        return;
    }
    /* Every probe gets its whole timeout, the last one too: cut to what is left of the switch's
     * deadline, it timed out under load after a millisecond and the condition's message named
     * that instead of what the data path answered (found by CI). */
    e->probe =
        pathprobe_send(c->http, ip, port, nonce, PATHPROBE_DEFAULT_TIMEOUT_MS, on_switch_probe, e);
    if (e->probe) {
        e->switch_probes++;
    } else {
        es_text_setf(&e->switch_last, 256, "cannot send a probe to %s:%u", ip, port);
        switch_arm(e, SWITCH_PROBE_EVERY_MS);
    }
}

static void switch_begin(struct es *e, const char *why)
{
    struct decide_switch_in in = {
        .now_ms = clock_mono_ms(),
        .switching = e->switching,
        .retry_ms = e->switch_retry_ms,
        .slices_deleted_ms = e->slices_deleted_ms,
        .grace_ms = switch_grace_ms(e->c),
        .propagation_ms = e->c->propagation_ms,
        .api_back_ms = e->c->api_back_ms,
    };
    const char *not_now;
    enum decide_switch verdict = decide_switch(&in, &not_now);
    /* not begun: the next check asks again (an abandoned attempt's condition says why) */
    if (verdict == DECIDE_SWITCH_API_BACK) {
        uint64_t since_back = in.now_ms - in.api_back_ms;
        if (!e->settle_logged)
            log_info("scale to zero waits: the API server answered again only a moment ago, and "
                     "the cluster's controllers and kube-proxy catch up first",
                     "elastiservice=%s api_back_ms_ago=%llu wait_ms=%llu", e->key,
                     (unsigned long long)since_back,
                     (unsigned long long)(DECIDE_API_SETTLE_MS - since_back));
        e->settle_logged = true;
        return;
    }
    if (verdict != DECIDE_SWITCH_BEGIN)
        return;
    e->settle_logged = false;
    e->switch_ev = evtimer_new(e->c->base, on_switch_timer, e);
    if (!e->switch_ev) {
        log_error("out of memory starting a scale to zero; the next check retries",
                  "elastiservice=%s", e->key);
        return;
    }
    e->switching = true;
    e->switch_started_ms = clock_mono_ms();
    e->switch_probes = 0;
    es_text_clear(&e->switch_last);
    es_text_setf(&e->switch_why, 256, "%s", why);
    routes_changed(e); /* listen on the resolver ports now: before the slice names them */
    resolver_slices_apply(e);
    es_cond_set(e, "ScaledToZero", false, "AwaitingDataPath",
                "the resolver EndpointSlice is written; the last replica is removed once the "
                "Service's traffic is shown to reach holdfast");
    es_status_sync(e, true);
    log_info("scale to zero: waiting for the data path to reach holdfast",
             "elastiservice=%s why=%s", e->key, why);
    switch_arm(e, 0);
}
