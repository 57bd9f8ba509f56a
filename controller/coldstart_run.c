/*
 * coldstart_run: the controller's side of the phases of a cold start (coldstart.h holds the
 * arithmetic). The wake's scale call marks the start (the data plane's first held request) and
 * the call's moments (wake.c calls coldstart_wake_sent / _answered); the leader's switch to
 * serve lists the target's pods once (by e->wl_selector) and reads the woken pod's moments; the
 * data plane tells when the first held byte was written. Then the cold start is recorded three
 * ways: status.lastColdStart (one status sync), a ColdStart Event with the breakdown in one
 * line, and holdfast_cold_start_phase_seconds. A pod list that fails or finds no pod with the
 * endpoint's address leaves the pod phases out; the rest is still recorded.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "controller/es.h"

/* How long the record waits for the first held byte after the pod list answered: the held
 * connections are sent to the pod as soon as its endpoint is ready, so this is rarely needed. */
#define COLD_BYTE_CHECK_MS 100
#define COLD_BYTE_CHECKS 50

static int64_t mono_to_wall_ms(uint64_t mono_ns)
{
    return coldstart_mono_to_wall_ms(mono_ns, clock_mono_ns(), clock_wall_ns());
}

/* Starts a cold start, from the first held request when the data plane saw one, unless the one
 * open is that one (a wake repeated: a retry, one folded in, the held requests since relayed).
 * A first held request other than the open one's starts anew: the open one was never recorded
 * (a replica that woke it but did not lead at the switch). */
static void cold_begin(struct es *e)
{
    uint64_t held = e->svc ? svc_state_wake_started_ns(e->svc) : 0;
    if (e->cold_open && (held == 0 || held == e->cold_held_ns))
        return;
    coldstart_init(&e->cold);
    e->cold_held_ns = held;
    if (held)
        e->cold.at_ms[COLD_HELD] = mono_to_wall_ms(held);
    e->cold_open = true;
}

void coldstart_wake_sent(struct es *e)
{
    cold_begin(e);
    if (e->cold.at_ms[COLD_SCALE_SENT] < 0)
        e->cold.at_ms[COLD_SCALE_SENT] = clock_wall_ns() / 1000000;
}

void coldstart_wake_answered(struct es *e)
{
    if (e->cold_open && e->cold.at_ms[COLD_SCALE_ANSWERED] < 0)
        e->cold.at_ms[COLD_SCALE_ANSWERED] = clock_wall_ns() / 1000000;
    if (!e->c->leader)
        e->cold_open = false; /* only the leader switches to serve and records it */
}

/* Records the cold start: status, Event, histogram, log line. */
static void cold_record(struct es *e)
{
    uint64_t byte = e->svc ? svc_state_first_byte_ns(e->svc) : 0;
    if (byte && e->cold_held_ns && byte >= e->cold_held_ns)
        e->cold.at_ms[COLD_FIRST_BYTE] = mono_to_wall_ms(byte);
    cJSON *st = coldstart_status(&e->cold);
    if (!st)
        return;
    int64_t d[COLD_N];
    coldstart_durations(&e->cold, d);
    for (int p = COLD_SCALE_SENT; p < COLD_N; p++)
        if (d[p] >= 0)
            hist_observe_ns(&e->c->cold_phase_seconds[p], (uint64_t)d[p] * 1000000);
    char line[512];
    coldstart_breakdown(&e->cold, line, sizeof(line));
    log_info("cold start recorded", "elastiservice=%s breakdown=%s", e->key, line);
    es_event(e, false, "ColdStart", line);
    cJSON_Delete(e->last_cold_start);
    e->last_cold_start = st;
    es_status_sync(e, false);
}

static void on_byte_check(evutil_socket_t fd, short what, void *arg);

/* Records the cold start once the first held byte is written (or nothing is held any more, or
 * the checks are used up); else checks again in COLD_BYTE_CHECK_MS, on e's own timer. */
static void byte_check(struct es *e)
{
    uint64_t byte = e->svc ? svc_state_first_byte_ns(e->svc) : 0;
    bool written = !e->cold_held_ns || (byte && byte >= e->cold_held_ns);
    if (written || --e->cold_waits <= 0 || !e->svc || svc_state_held(e->svc) == 0 || e->deleting) {
        cold_record(e);
        return;
    }
    if (!e->cold_ev)
        e->cold_ev = evtimer_new(e->c->base, on_byte_check, e);
    struct timeval tv = {0, COLD_BYTE_CHECK_MS * 1000};
    if (!e->cold_ev || evtimer_add(e->cold_ev, &tv) != 0)
        cold_record(e);
}

static void on_byte_check(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    byte_check(arg); /* e: its timer is freed with it */
}

/* The address of an endpoint "ip:port" or "[ip6]:port", into ip. */
static void endpoint_ip(const char *endpoint, char *ip, size_t len)
{
    const char *start = endpoint, *end = strrchr(endpoint, ':');
    if (*endpoint == '[') {
        start = endpoint + 1;
        end = strchr(start, ']');
    }
    size_t n = end ? (size_t)(end - start) : strlen(start);
    snprintf(ip, len, "%.*s", (int)n, start);
}

struct cold_list {
    struct es_ref *ref;
    char ip[64];
};

static void on_pods(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct cold_list *l = arg;
    struct es *e = es_ref_take(l->ref);
    const cJSON *pod = err ? NULL : es_pod_with_ip(obj, l->ip);
    if (e && err)
        log_warn("cannot list the target's pods for the cold start's phases: recorded without "
                 "them",
                 "elastiservice=%s error=%s message=%s", e->key, err->reason, err->message);
    else if (e && !pod)
        log_warn("no pod of the target has the address switched to: the cold start is recorded "
                 "without the pod's phases",
                 "elastiservice=%s address=%s", e->key, l->ip);
    free(l);
    if (!e)
        return;
    if (pod)
        coldstart_read_pod(&e->cold, pod);
    e->cold_waits = COLD_BYTE_CHECKS;
    byte_check(e);
}

void coldstart_on_serve(struct es *e, const char *endpoint)
{
    if (!e->cold_open && !(e->svc && svc_state_wake_started_ns(e->svc)))
        return; /* scaled up by another hand, no request held: not a cold start of ours */
    cold_begin(e);
    e->cold_open = false; /* the next wake starts the next one */
    struct cold_list *l = calloc(1, sizeof(*l));
    if (!l)
        return;
    endpoint_ip(endpoint, l->ip, sizeof(l->ip));
    l->ref = es_ref_new(e);
    struct kube_list_opts lo = {.label_selector = e->wl_selector};
    if (l->ref && e->wl_selector && l->ip[0] &&
        kube_list(e->c->kube, &RES_POD, e->ns, &lo, on_pods, l))
        return;
    /* no selector known yet or no address: the phases this replica has */
    if (l->ref)
        es_ref_take(l->ref);
    free(l);
    e->cold_waits = COLD_BYTE_CHECKS;
    byte_check(e);
}

void coldstart_status_adopt(struct es *e, const cJSON *status, bool ours_newer)
{
    const cJSON *lc = json_get(status, "lastColdStart");
    if (ours_newer || !cJSON_IsObject(lc))
        return;
    cJSON_Delete(e->last_cold_start);
    e->last_cold_start = cJSON_Duplicate(lc, true);
}
