/*
 * lifecycle: readiness at start, signals, the shutdown delay and the drain. See lifecycle.h.
 */
#include "process/lifecycle.h"

#include <event2/event.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "common/clock.h"
#include "common/log.h"
#include "controller/controller.h"
#include "resolver/dataplane.h"

#define DRAIN_POLL_MS 50

struct lifecycle {
    struct event_base *base;
    struct dataplane *dp;
    struct controller *ctl; /* Kubernetes mode, else NULL */
    unsigned shutdown_delay_s;
    unsigned drain_timeout_s;
    bool lease_done; /* the leader Lease was handed back (or there was none) */
    struct event *sigterm, *sigint;
    struct event *drain_poll;
    struct event *drain_start; /* the end of the shutdown delay */
    struct event *ready_check;
    uint64_t drain_deadline_ns;
    uint64_t started_ns;
    bool draining;
};

static void on_drain_poll(evutil_socket_t fd, short what, void *arg)
{
    struct lifecycle *p = arg;
    long open = dataplane_open_connections(p->dp);
    if (open == 0 && p->lease_done && (!p->ctl || controller_idle(p->ctl))) {
        log_info("drained: every connection finished", NULL);
        event_base_loopbreak(p->base);
        return;
    }
    if (clock_mono_ns() >= p->drain_deadline_ns) {
        log_warn("drain timeout: closing the connections left", "open_connections=%ld", open);
        event_base_loopbreak(p->base);
        return;
    }
    struct timeval tv = {0, DRAIN_POLL_MS * 1000};
    event_add(p->drain_poll, &tv);
}

static void on_lease_released(bool released, void *arg)
{
    struct lifecycle *p = arg;
    p->lease_done = true;
    if (!released)
        log_info("no leader Lease to hand back", NULL);
}

static void on_drain_start(evutil_socket_t fd, short what, void *arg)
{
    struct lifecycle *p = arg;
    log_info("draining: listeners closed, finishing held and relayed connections",
             "drain_timeout_s=%u open_connections=%ld", p->drain_timeout_s,
             dataplane_open_connections(p->dp));
    dataplane_drain(p->dp);
    p->drain_deadline_ns = clock_mono_ns() + (uint64_t)p->drain_timeout_s * 1000000000ull;
    on_drain_poll(-1, 0, p);
}

static void on_term(evutil_socket_t sig, short what, void *arg)
{
    struct lifecycle *p = arg;
    if (p->draining) {
        log_warn("second signal: stopping now", "signal=%d", (int)sig);
        event_base_loopbreak(p->base);
        return;
    }
    p->draining = true;
    dataplane_set_stopping(p->dp); /* /readyz fails from now on */
    if (p->ctl)
        controller_stop_leading(p->ctl, on_lease_released, p); /* others take over at once */
    else
        p->lease_done = true;
    if (p->shutdown_delay_s) {
        /* Until the endpoint removal reaches every kube-proxy (and every resolver slice is
         * rewritten without this replica), new connections still arrive here: keep taking
         * them, and close the listeners only after the delay. */
        log_info("stopping: not ready; still accepting for the shutdown delay",
                 "signal=%d "
                 "shutdown_delay_s=%u",
                 (int)sig, p->shutdown_delay_s);
        struct timeval tv = {(time_t)p->shutdown_delay_s, 0};
        event_add(p->drain_start, &tv);
        return;
    }
    on_drain_start(-1, 0, p);
}

static void on_ready_check(evutil_socket_t fd, short what, void *arg)
{
    struct lifecycle *p = arg;
    if (dataplane_ready(p->dp)) {
        log_info("ready", "startup_ms=%f", (double)(clock_mono_ns() - p->started_ns) / 1e6);
        return;
    }
    struct timeval tv = {0, 1000};
    event_add(p->ready_check, &tv);
}

struct lifecycle *lifecycle_new(struct event_base *base, struct dataplane *dp,
                                struct controller *ctl, unsigned shutdown_delay_s,
                                unsigned drain_timeout_s)
{
    struct lifecycle *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    *p = (struct lifecycle){.base = base,
                            .dp = dp,
                            .ctl = ctl,
                            .shutdown_delay_s = shutdown_delay_s,
                            .drain_timeout_s = drain_timeout_s};
    p->sigterm = evsignal_new(base, SIGTERM, on_term, p);
    p->sigint = evsignal_new(base, SIGINT, on_term, p);
    p->drain_poll = evtimer_new(base, on_drain_poll, p);
    p->drain_start = evtimer_new(base, on_drain_start, p);
    p->ready_check = evtimer_new(base, on_ready_check, p);
    if (!p->sigterm || !p->sigint || !p->drain_poll || !p->drain_start || !p->ready_check) {
        lifecycle_free(p);
        return NULL;
    }
    evsignal_add(p->sigterm, NULL);
    evsignal_add(p->sigint, NULL);
    return p;
}

void lifecycle_log_ready(struct lifecycle *l, uint64_t started_ns)
{
    l->started_ns = started_ns;
    on_ready_check(-1, 0, l);
}

void lifecycle_free(struct lifecycle *l)
{
    if (!l)
        return;
    if (l->sigterm)
        event_free(l->sigterm);
    if (l->sigint)
        event_free(l->sigint);
    if (l->drain_poll)
        event_free(l->drain_poll);
    if (l->drain_start)
        event_free(l->drain_start);
    if (l->ready_check)
        event_free(l->ready_check);
    free(l);
}
