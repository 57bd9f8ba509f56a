/*
 * leader: Lease-based leader election (see leader.h for the rules). One try at a time: either a
 * read (GET) followed by a write, or, while leading, a write over the object we wrote last. Two
 * timers: `tick` schedules the next try, `deadline` ends leadership when renewals stop working.
 */
#include "controller/kube/leader.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"
#include "controller/kube/kube.h"

static const struct kube_resource lease_res = {"coordination.k8s.io", "v1", "leases", true};

enum leader_state {
    LS_NEW,       /* leader_start not called yet */
    LS_DISABLED,  /* --leader-elect=false: always leader */
    LS_CANDIDATE, /* trying to acquire */
    LS_LEADING,   /* holding and renewing */
    LS_RELEASING, /* leader_release: handing the Lease back */
    LS_DONE,      /* released (or nothing to release): no more tries */
};

struct leader {
    struct kube_client *client;
    struct event_base *base;
    char *identity;
    char *ns;
    char *name;
    long lease_ms, renew_ms, retry_ms;
    struct leader_callbacks cb;
    enum leader_state state;
    atomic_bool leading;    /* mirrors state == LS_LEADING || LS_DISABLED, for other threads */
    struct kube_call *call; /* the try or release in flight, or NULL */
    struct event *tick;     /* next try (or, releasing/disabled, the deferred callback) */
    struct event *deadline; /* leading: renew_deadline after the last renewal */
    cJSON *observed;        /* the Lease as last read or written, or NULL */
    char *observed_record;  /* its spec, printed: to notice when the record changes */
    long long observed_ms;  /* monotonic ms when we saw the record change */
    char holder[256];       /* holderIdentity last observed */
    char reported[256];     /* the leader last passed to on_new_leader */
    bool failing;           /* the last try failed (a warning was logged for the run) */
    unsigned long fails;    /* tries failed in the current run */
    unsigned long long rng; /* xorshift state for jitter */
    leader_released_fn released_cb;
    void *released_arg;
    bool released_ok;    /* the result handed to released_cb */
    bool started;        /* leader_start was called */
    bool release_reread; /* the release got 409 and read the Lease again */
};

/* Now as a Lease's MicroTime: "2026-11-22T14:00:00.123456Z". */
static void now_microtime(char *buf, size_t len)
{
    uint64_t ns = clock_wall_ns();
    if (clock_rfc3339_format(buf, len, (int64_t)(ns / 1000000000), (long)(ns % 1000000000), 6) != 0)
        snprintf(buf, len, "1970-01-01T00:00:00.000000Z");
}

static void arm(struct event *ev, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_add(ev, &tv);
}

/* retry_period * [1, 2.2): client-go's wait.JitterUntil with JitterFactor 1.2, so candidates
 * started together do not keep colliding. */
static long jittered(struct leader *l)
{
    l->rng ^= l->rng << 13;
    l->rng ^= l->rng >> 7;
    l->rng ^= l->rng << 17;
    double f = (double)(l->rng >> 11) / (double)(1ULL << 53);
    return l->retry_ms + (long)(f * 1.2 * (double)l->retry_ms);
}

static cJSON *spec_of(const cJSON *lease)
{
    return cJSON_GetObjectItemCaseSensitive(lease, "spec");
}

static const char *spec_str(const cJSON *lease, const char *field)
{
    const char *s = json_str(spec_of(lease), field);
    return s ? s : "";
}

static long spec_num(const cJSON *lease, const char *field)
{
    return (long)json_num(spec_of(lease), field, 0);
}

static void set_leading(struct leader *l, bool on)
{
    atomic_store(&l->leading, on);
}

/* Keeps `lease` as the latest state; notes the time when its record changed and reports a new
 * holder. Takes ownership of lease. */
static void observe(struct leader *l, cJSON *lease)
{
    char *record = cJSON_PrintUnformatted(spec_of(lease) ? spec_of(lease) : lease);
    if (!l->observed_record || !record || strcmp(record, l->observed_record) != 0) {
        l->observed_ms = (long long)clock_mono_ms();
        free(l->observed_record);
        l->observed_record = record;
    } else {
        free(record);
    }
    cJSON_Delete(l->observed);
    l->observed = lease;
    snprintf(l->holder, sizeof(l->holder), "%s", spec_str(lease, "holderIdentity"));
    if (l->holder[0] && strcmp(l->holder, l->reported) != 0) {
        snprintf(l->reported, sizeof(l->reported), "%s", l->holder);
        log_info("new leader observed", "lease_namespace=%s lease=%s leader=%s identity=%s", l->ns,
                 l->name, l->holder, l->identity);
        if (l->cb.on_new_leader)
            l->cb.on_new_leader(l->holder, l->cb.arg);
    }
}

static void forget(struct leader *l)
{
    cJSON_Delete(l->observed);
    l->observed = NULL;
}

static void start_leading(struct leader *l)
{
    l->state = LS_LEADING;
    set_leading(l, true);
    log_info("started leading", "lease_namespace=%s lease=%s identity=%s transitions=%ld", l->ns,
             l->name, l->identity, l->observed ? spec_num(l->observed, "leaseTransitions") : 0L);
    if (l->cb.on_started_leading)
        l->cb.on_started_leading(l->cb.arg);
}

static void stop_leading(struct leader *l, enum log_level lvl, const char *why)
{
    l->state = LS_CANDIDATE;
    set_leading(l, false);
    event_del(l->deadline);
    log_write(lvl, "stopped leading", "lease_namespace=%s lease=%s identity=%s reason=%s", l->ns,
              l->name, l->identity, why);
    if (l->cb.on_stopped_leading)
        l->cb.on_stopped_leading(l->cb.arg);
}

static void try_once(struct leader *l);

static void schedule(struct leader *l)
{
    arm(l->tick, l->state == LS_LEADING ? l->retry_ms : jittered(l));
}

static void try_failed(struct leader *l, const char *what, const struct kube_error *err)
{
    l->fails++;
    enum log_level lvl = l->failing ? LOG_DEBUG : LOG_WARN;
    l->failing = true;
    log_write(
        lvl, l->state == LS_LEADING ? "lease renewal failed, retrying" : "lease try failed",
        "lease_namespace=%s lease=%s identity=%s step=%s code=%s http=%ld message=%s failures=%lu",
        l->ns, l->name, l->identity, what, kube_err_name(err->code), err->http, err->message,
        l->fails);
    schedule(l);
}

static void try_succeeded(struct leader *l)
{
    if (l->failing)
        log_info("lease tries work again",
                 "lease_namespace=%s lease=%s identity=%s after_failures=%lu", l->ns, l->name,
                 l->identity, l->fails);
    l->failing = false;
    l->fails = 0;
}

/* The Lease record for our write over `old` (NULL: a new Lease). Caller owns the result. */
static cJSON *our_record(struct leader *l, const cJSON *old)
{
    char now[40];
    now_microtime(now, sizeof(now));
    cJSON *lease = old ? cJSON_Duplicate(old, true) : cJSON_CreateObject();
    if (!old) {
        cJSON_AddStringToObject(lease, "apiVersion", "coordination.k8s.io/v1");
        cJSON_AddStringToObject(lease, "kind", "Lease");
        cJSON *md = cJSON_AddObjectToObject(lease, "metadata");
        cJSON_AddStringToObject(md, "name", l->name);
        cJSON_AddStringToObject(md, "namespace", l->ns);
    }
    bool ours = old && strcmp(spec_str(old, "holderIdentity"), l->identity) == 0;
    char acquire[40];
    snprintf(acquire, sizeof(acquire), "%s", ours ? spec_str(old, "acquireTime") : now);
    if (!acquire[0])
        snprintf(acquire, sizeof(acquire), "%s", now);
    long transitions = !old   ? 0
                       : ours ? spec_num(old, "leaseTransitions")
                              : spec_num(old, "leaseTransitions") + 1;
    cJSON_DeleteItemFromObjectCaseSensitive(lease, "spec");
    cJSON *spec = cJSON_AddObjectToObject(lease, "spec");
    cJSON_AddStringToObject(spec, "holderIdentity", l->identity);
    cJSON_AddNumberToObject(spec, "leaseDurationSeconds", (double)((l->lease_ms + 999) / 1000));
    cJSON_AddStringToObject(spec, "acquireTime", acquire);
    cJSON_AddStringToObject(spec, "renewTime", now);
    cJSON_AddNumberToObject(spec, "leaseTransitions", (double)transitions);
    return lease;
}

static void on_write(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct leader *l = arg;
    l->call = NULL;
    if (err) {
        /* Someone wrote the Lease since we read it (a renewal by its holder, a rival's takeover):
         * read it again right away and judge from what is there. */
        if (err->code == KUBE_ERR_CONFLICT || err->code == KUBE_ERR_ALREADY_EXISTS) {
            log_debug("lease write lost a race, reading it again",
                      "lease_namespace=%s lease=%s identity=%s", l->ns, l->name, l->identity);
            forget(l);
            if (l->state == LS_LEADING)
                try_once(l);
            else
                schedule(l);
            return;
        }
        try_failed(l, "write", err);
        return;
    }
    observe(l, cJSON_Duplicate(obj, true));
    try_succeeded(l);
    if (l->state != LS_LEADING)
        start_leading(l);
    arm(l->deadline, l->renew_ms);
    schedule(l);
}

static void write_lease(struct leader *l, const cJSON *old)
{
    cJSON *rec = our_record(l, old);
    l->call = old ? kube_update(l->client, &lease_res, l->ns, l->name, NULL, rec, on_write, l)
                  : kube_create(l->client, &lease_res, l->ns, rec, on_write, l);
    cJSON_Delete(rec);
    if (!l->call) {
        struct kube_error e = {.code = KUBE_ERR_OTHER, .message = "cannot start the request"};
        try_failed(l, "write", &e);
    }
}

static void on_get(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct leader *l = arg;
    l->call = NULL;
    if (err && err->code == KUBE_ERR_NOT_FOUND) {
        forget(l);
        write_lease(l, NULL);
        return;
    }
    if (err) {
        try_failed(l, "read", err);
        return;
    }
    observe(l, cJSON_Duplicate(obj, true));
    const char *holder = l->holder;
    long dur_s = spec_num(obj, "leaseDurationSeconds");
    long long dur_ms = dur_s > 0 ? dur_s * 1000LL : l->lease_ms;
    if (holder[0] && strcmp(holder, l->identity) != 0 &&
        l->observed_ms + dur_ms > (long long)clock_mono_ms()) {
        try_succeeded(l);
        if (l->state == LS_LEADING)
            stop_leading(l, LOG_WARN, "the Lease is held by another replica");
        schedule(l);
        return;
    }
    write_lease(l, l->observed);
}

static void try_once(struct leader *l)
{
    if (l->state == LS_LEADING && l->observed) {
        write_lease(l, l->observed);
        return;
    }
    l->call = kube_get(l->client, &lease_res, l->ns, l->name, NULL, on_get, l);
    if (!l->call) {
        struct kube_error e = {.code = KUBE_ERR_OTHER, .message = "cannot start the request"};
        try_failed(l, "read", &e);
    }
}

static void finish_release(struct leader *l)
{
    event_del(l->deadline);
    event_del(l->tick);
    l->state = LS_DONE;
    if (l->released_cb) {
        leader_released_fn cb = l->released_cb;
        l->released_cb = NULL;
        cb(l->released_ok, l->released_arg);
    }
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    struct leader *l = arg;
    switch (l->state) {
    case LS_DISABLED:
        log_info("started leading", "identity=%s leader_election=%b", l->identity, 0);
        if (l->cb.on_started_leading)
            l->cb.on_started_leading(l->cb.arg);
        break;
    case LS_CANDIDATE:
    case LS_LEADING:
        if (!l->call)
            try_once(l);
        break;
    case LS_DONE:
        finish_release(l);
        break;
    case LS_NEW:
    case LS_RELEASING:
        break;
    }
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct leader *l = arg;
    if (l->state != LS_LEADING)
        return;
    if (l->call) {
        kube_call_cancel(l->call);
        l->call = NULL;
    }
    forget(l);
    stop_leading(l, LOG_WARN, "no renewal succeeded within the renew deadline");
    schedule(l);
}

static void on_released(cJSON *obj, const struct kube_error *err, void *arg);

/* PUTs the released record over `base` (holder "", leaseDurationSeconds 1, transitions kept, as
 * client-go's release). Returns 0, or -1 when the request cannot start. */
static int send_release(struct leader *l, const cJSON *base)
{
    char now[40];
    now_microtime(now, sizeof(now));
    cJSON *rec = cJSON_Duplicate(base, true);
    long transitions = spec_num(base, "leaseTransitions");
    cJSON_DeleteItemFromObjectCaseSensitive(rec, "spec");
    cJSON *spec = cJSON_AddObjectToObject(rec, "spec");
    cJSON_AddStringToObject(spec, "holderIdentity", "");
    cJSON_AddNumberToObject(spec, "leaseDurationSeconds", 1);
    cJSON_AddStringToObject(spec, "acquireTime", now);
    cJSON_AddStringToObject(spec, "renewTime", now);
    cJSON_AddNumberToObject(spec, "leaseTransitions", (double)transitions);
    l->call = kube_update(l->client, &lease_res, l->ns, l->name, NULL, rec, on_released, l);
    cJSON_Delete(rec);
    return l->call ? 0 : -1;
}

/* After a release answered 409: the renewal cancelled by leader_release may have landed after
 * all. Release again over what is there if it is still ours; leave it alone if not. */
static void on_release_reread(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct leader *l = arg;
    l->call = NULL;
    if (!err && strcmp(spec_str(obj, "holderIdentity"), l->identity) == 0 &&
        send_release(l, obj) == 0)
        return;
    if (!err)
        log_info("lease not released: another replica holds it already",
                 "lease_namespace=%s lease=%s identity=%s holder=%s", l->ns, l->name, l->identity,
                 spec_str(obj, "holderIdentity"));
    else
        log_warn("lease release failed; a successor waits for the lease to expire",
                 "lease_namespace=%s lease=%s identity=%s code=%s message=%s", l->ns, l->name,
                 l->identity, kube_err_name(err->code), err->message);
    l->released_ok = false;
    finish_release(l);
}

static void on_released(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct leader *l = arg;
    l->call = NULL;
    if (err && err->code == KUBE_ERR_CONFLICT && !l->release_reread) {
        l->release_reread = true;
        l->call = kube_get(l->client, &lease_res, l->ns, l->name, NULL, on_release_reread, l);
        if (l->call)
            return;
    }
    if (err)
        log_warn("lease release failed; a successor waits for the lease to expire",
                 "lease_namespace=%s lease=%s identity=%s code=%s message=%s", l->ns, l->name,
                 l->identity, kube_err_name(err->code), err->message);
    else
        log_info("lease released", "lease_namespace=%s lease=%s identity=%s", l->ns, l->name,
                 l->identity);
    l->released_ok = err == NULL;
    finish_release(l);
}

static void on_release_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct leader *l = arg;
    if (l->state != LS_RELEASING)
        return;
    if (l->call) {
        kube_call_cancel(l->call);
        l->call = NULL;
    }
    log_warn("lease release timed out; a successor waits for the lease to expire",
             "lease_namespace=%s lease=%s identity=%s", l->ns, l->name, l->identity);
    l->released_ok = false;
    finish_release(l);
}

void leader_release(struct leader *l, leader_released_fn done, void *arg)
{
    l->released_cb = done;
    l->released_arg = arg;
    l->released_ok = false;
    event_del(l->tick);
    event_del(l->deadline);
    bool was_leading = l->state == LS_LEADING;
    if (l->call) {
        kube_call_cancel(l->call);
        l->call = NULL;
    }
    if (l->state == LS_DISABLED) {
        set_leading(l, false);
        if (l->cb.on_stopped_leading)
            l->cb.on_stopped_leading(l->cb.arg);
    }
    if (!was_leading || !l->observed) {
        if (was_leading)
            stop_leading(l, LOG_INFO, "shutting down");
        l->state = LS_DONE;
        arm(l->tick, 0);
        return;
    }
    /* Stop leader work before anyone else can take over. */
    stop_leading(l, LOG_INFO, "shutting down");
    l->state = LS_RELEASING;
    if (send_release(l, l->observed) != 0) {
        log_warn("lease release could not start; a successor waits for the lease to expire",
                 "lease_namespace=%s lease=%s identity=%s", l->ns, l->name, l->identity);
        l->state = LS_DONE;
        arm(l->tick, 0);
        return;
    }
    event_free(l->deadline);
    l->deadline = evtimer_new(l->base, on_release_timeout, l);
    arm(l->deadline, l->renew_ms);
}

struct leader *leader_new(struct kube_client *c, const struct leader_opts *o,
                          const struct leader_callbacks *cb, char *err, size_t errlen)
{
    long lease = o->lease_duration_ms > 0 ? o->lease_duration_ms : 15000;
    long renew = o->renew_deadline_ms > 0 ? o->renew_deadline_ms : 10000;
    long retry = o->retry_period_ms > 0 ? o->retry_period_ms : 2000;
    if (!o->identity || !o->identity[0]) {
        snprintf(err, errlen, "leader election: the identity (pod name) is empty");
        return NULL;
    }
    if (strlen(o->identity) >= sizeof(((struct leader *)0)->holder)) {
        snprintf(err, errlen, "leader election: the identity is longer than 255 characters");
        return NULL;
    }
    if (!o->disabled && (!o->ns || !o->ns[0] || !o->name || !o->name[0])) {
        snprintf(err, errlen, "leader election: the Lease namespace and name are required");
        return NULL;
    }
    if (!o->disabled && (lease <= renew || (double)renew <= 1.2 * (double)retry)) {
        snprintf(err, errlen,
                 "leader election: need lease duration (%ld ms) > renew deadline (%ld ms) > 1.2 x "
                 "retry period (%ld ms)",
                 lease, renew, retry);
        return NULL;
    }
    struct leader *l = xcalloc(1, sizeof(*l));
    l->client = c;
    l->base = kube_client_base(c);
    l->identity = xstrdup(o->identity);
    l->ns = xstrdup(o->ns ? o->ns : "");
    l->name = xstrdup(o->name ? o->name : "");
    l->lease_ms = lease;
    l->renew_ms = renew;
    l->retry_ms = retry;
    if (cb)
        l->cb = *cb;
    l->state = LS_NEW;
    atomic_init(&l->leading, o->disabled);
    if (o->disabled)
        l->state = LS_DISABLED;
    uint64_t wall_ns = clock_wall_ns();
    /* Never 0: xorshift would stay at 0. */
    l->rng = (((unsigned long long)(wall_ns % 1000000000) << 20) ^ (unsigned long long)getpid() ^
              (unsigned long long)(wall_ns / 1000000000)) |
             1ULL;
    l->tick = evtimer_new(l->base, on_tick, l);
    l->deadline = evtimer_new(l->base, on_deadline, l);
    if (!l->tick || !l->deadline) {
        leader_free(l);
        snprintf(err, errlen, "leader election: out of memory");
        return NULL;
    }
    if (o->disabled)
        snprintf(l->holder, sizeof(l->holder), "%s", l->identity);
    return l;
}

int leader_start(struct leader *l)
{
    if (l->started || l->state == LS_DONE)
        return -1;
    l->started = true;
    if (l->state == LS_NEW)
        l->state = LS_CANDIDATE;
    if (l->state == LS_CANDIDATE)
        log_info(
            "leader election started",
            "lease_namespace=%s lease=%s identity=%s lease_duration_ms=%ld renew_deadline_ms=%ld "
            "retry_period_ms=%ld",
            l->ns, l->name, l->identity, l->lease_ms, l->renew_ms, l->retry_ms);
    arm(l->tick, 0);
    return 0;
}

bool leader_is_leader(const struct leader *l)
{
    return atomic_load(&((struct leader *)l)->leading);
}

void leader_free(struct leader *l)
{
    if (!l)
        return;
    if (l->call)
        kube_call_cancel(l->call);
    if (l->tick)
        event_free(l->tick);
    if (l->deadline)
        event_free(l->deadline);
    cJSON_Delete(l->observed);
    free(l->observed_record);
    free(l->identity);
    free(l->ns);
    free(l->name);
    free(l);
}

/* ---- taking the Lease over (leader_take_over) ---- */

struct takeover {
    struct kube_client *client;
    char ns[254], name[254], identity[256];
    long duration_s;
    int tries;
    leader_takeover_fn done;
    void *arg;
};

static void takeover_get(struct takeover *t);

static void takeover_finish(struct takeover *t, const struct kube_error *err)
{
    t->done(err, t->arg);
    free(t);
}

static void on_takeover_write(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct takeover *t = arg;
    if (err && (err->code == KUBE_ERR_CONFLICT || err->code == KUBE_ERR_ALREADY_EXISTS) &&
        ++t->tries < 5) {
        takeover_get(t); /* a renewal slipped in between: read and write again */
        return;
    }
    takeover_finish(t, err);
}

static void on_takeover_get(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct takeover *t = arg;
    if (err && err->code != KUBE_ERR_NOT_FOUND) {
        takeover_finish(t, err);
        return;
    }
    char now[40];
    now_microtime(now, sizeof(now));
    cJSON *lease = err ? cJSON_CreateObject() : cJSON_Duplicate(obj, true);
    if (err) {
        cJSON_AddStringToObject(lease, "apiVersion", "coordination.k8s.io/v1");
        cJSON_AddStringToObject(lease, "kind", "Lease");
        cJSON *md = cJSON_AddObjectToObject(lease, "metadata");
        cJSON_AddStringToObject(md, "name", t->name);
        cJSON_AddStringToObject(md, "namespace", t->ns);
    }
    long transitions = err ? 0 : spec_num(obj, "leaseTransitions") + 1;
    cJSON_DeleteItemFromObjectCaseSensitive(lease, "spec");
    cJSON *spec = cJSON_AddObjectToObject(lease, "spec");
    cJSON_AddStringToObject(spec, "holderIdentity", t->identity);
    cJSON_AddNumberToObject(spec, "leaseDurationSeconds", (double)t->duration_s);
    cJSON_AddStringToObject(spec, "acquireTime", now);
    cJSON_AddStringToObject(spec, "renewTime", now);
    cJSON_AddNumberToObject(spec, "leaseTransitions", (double)transitions);
    struct kube_call *call =
        err ? kube_create(t->client, &lease_res, t->ns, lease, on_takeover_write, t)
            : kube_update(t->client, &lease_res, t->ns, t->name, NULL, lease, on_takeover_write, t);
    cJSON_Delete(lease);
    if (!call) {
        struct kube_error e = {.code = KUBE_ERR_OTHER, .message = "cannot start the request"};
        takeover_finish(t, &e);
    }
}

static void takeover_get(struct takeover *t)
{
    if (!kube_get(t->client, &lease_res, t->ns, t->name, NULL, on_takeover_get, t)) {
        struct kube_error e = {.code = KUBE_ERR_OTHER, .message = "cannot start the request"};
        takeover_finish(t, &e);
    }
}

bool leader_take_over(struct kube_client *client, const char *ns, const char *name,
                      const char *identity, long duration_s, leader_takeover_fn done, void *arg)
{
    struct takeover *t = xcalloc(1, sizeof(*t));
    t->client = client;
    snprintf(t->ns, sizeof(t->ns), "%s", ns);
    snprintf(t->name, sizeof(t->name), "%s", name);
    snprintf(t->identity, sizeof(t->identity), "%s", identity);
    t->duration_s = duration_s;
    t->done = done;
    t->arg = arg;
    takeover_get(t);
    return true;
}
