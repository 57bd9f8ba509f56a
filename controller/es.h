/*
 * es: the controller's private header, included by the .c files of controller/ only. `struct
 * es` is one ElastiService as the controller knows it (its parsed spec, what its status says,
 * what is in flight); `struct controller` is the control plane's state (informers, indexes,
 * route snapshots, resolver ports, timers, counters). Below them, what the controller's files
 * share, grouped by the file that defines it:
 *
 *   controller.c       wiring and life, informer handlers, indexes, reading an ElastiService
 *                      (spec when its generation moves, status), the mode, status writes,
 *                      Events, reconcile, deletion (lingering routes), the workload watch,
 *                      leadership, metrics
 *   finalize.c         holdfast's finalizer: added, and removed after the restore
 *   routes.c           route snapshots published to the data plane
 *   resolver_slices.c  status.ports, port allocation, the resolver EndpointSlices
 *   wake.c             the wake consumer, its retries, the diagnosis of a woken target
 *   switch.c           serve <-> proxy, and the switch to zero (the data path first)
 *   evaluate.c         every polling interval: the /scale read, the scale-down check,
 *                      pacing, liveness rounds
 *
 * The pure parts have headers of their own, each with a unit test: spec.h (spec parsing),
 * ports.h (resolver port allocation), decide.h (the scale-down and switch decisions), status.h
 * (what a status write sends, and echoes).
 */
#ifndef HOLDFAST_CONTROLLER_ES_H
#define HOLDFAST_CONTROLLER_ES_H

#include "controller/controller.h"

#include <event2/event.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/duration.h"
#include "common/json.h"
#include "common/key.h"
#include "common/log.h"
#include "common/strmap.h"
#include "controller/coldstart.h"
#include "controller/cron.h"
#include "controller/decide.h"
#include "controller/defaults.h"
#include "controller/earlyplan.h"
#include "controller/escached.h"
#include "controller/kube/events.h"
#include "controller/kube/http.h"
#include "controller/kube/informer.h"
#include "controller/kube/kube.h"
#include "controller/kube/kubeconfig.h"
#include "controller/lean.h"
#include "controller/kube/leader.h"
#include "controller/pathprobe.h"
#include "controller/ports.h"
#include "controller/prom.h"
#include "controller/service.h"
#include "controller/slices.h"
#include "controller/spec.h"
#include "controller/status.h"
#include "controller/target.h"
#include "resolver/dataplane.h"

#define FINALIZER "elasti.truefoundry.com/finalizer"
#define WAKE_REPEAT_MS 2000
/* How long the pods listed ready when proxy mode began keep not counting for the serve switch
 * (struct es, leaving): the EndpointSlice controller lists a deleted pod as terminating within
 * ms, or seconds after an API outage; a pod still listed ready after this long stays (a wake
 * answered before the ReplicaSet controller acted on the scale to zero). The workload's status
 * says so sooner when it can (workload_seen). */
#define LEAVING_MAX_MS 30000
/* The informers retry a failed list or watch after at most this long. After an API outage every
 * cache must come back at once, or whatever it feeds (a hand scale to zero, a resolver slice
 * write) is blind meanwhile (found by the soak): the first call of any client that the API server
 * answers again retries every informer waiting out its backoff (on_api_back). The lease renews
 * every 2 s, so that is within about 2 s; this cap bounds it when leader election is off and
 * nothing else calls. */
#define INFORMER_BACKOFF_MAX_MS 10000

static const struct kube_resource RES_ES = {"elasti.truefoundry.com", "v1alpha1", "elastiservices",
                                            true};
static const struct kube_resource RES_SVC = {"", "v1", "services", true};
static const struct kube_resource RES_SLICE = {"discovery.k8s.io", "v1", "endpointslices", true};
static const struct kube_resource RES_POD = {"", "v1", "pods", true};

/*
 * The texts of a struct es that are empty for almost every ElastiService (a spec error, why an
 * evaluation was blocked, a scale to zero's probe results, an awaited resourceVersion) are owned
 * strings, NULL while unset, not fixed buffers: 10,000 ElastiServices held 1.8 KB of empty
 * buffers each (bench/RESULTS.md, 7b). es_text reads one ("" when unset); es_text_setf sets one
 * to at most cap - 1 bytes (the size of the buffer it replaced), "" clears it. Out of memory it
 * still reads as set ("out of memory"): a spec error must not read as none.
 */
static inline const char *es_text(const char *t)
{
    return t ? t : "";
}

void es_text_clear(char **t);
void es_text_setf(char **t, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * An ElastiService's mode, status.mode. The switch to zero in flight (es.switching) is serve
 * still, and a woken target not ready yet (es.awaiting_wake false) is proxy still: neither is
 * written to status.
 */
enum es_mode {
    ES_MODE_NONE,  /* no status.mode yet: the first evaluation writes one */
    ES_MODE_SERVE, /* "serve": traffic goes to the target's pods */
    ES_MODE_PROXY, /* "proxy": traffic goes to the resolver, which holds requests */
    ES_MODE_OTHER, /* another text (a hand edit): treated as serving, written back as read */
};

/* One ElastiService, as parsed from its spec and status. */
struct es {
    struct es *next, *prev; /* controller.list */
    struct controller *c;
    char *ns, *name, *key;
    char *uid; /* metadata.uid, for Events */
    /* spec */
    struct es_spec spec; /* parsed when metadata.generation moves (es_spec_changed) */
    char *service_key;   /* "ns/service" under which by_service lists it, or NULL */
    /* why the spec is refused (es_text, at most 511 bytes), NULL: valid */
    char *spec_error;
    int64_t spec_gen; /* metadata.generation of the spec parsed above, 0: parse at every event */
    /* status and metadata */
    enum es_mode mode; /* status.mode as this replica knows it (es_set_mode, es_adopt_mode) */
    char *mode_other;  /* the text of ES_MODE_OTHER (es_text, at most 7 bytes), or NULL */
    int64_t created, last_scaled_up;
    int64_t scaled_up_unwritten; /* a wake's lastScaledUpTime the status does not carry yet */
    int slice_writes;            /* resolver slice creates and updates in flight */
    bool slices_again;           /* resolver_slices_apply was asked for meanwhile */
    int64_t generation;
    bool deleting, has_finalizer;
    bool finalizer_sent; /* our finalizer patch is on its way: until the informer shows it (or
                            the patch fails), reconciles do not send it again */
    bool finalize_sent;  /* being deleted: restored and the finalizer's removal sent; until that
                            fails, later reconciles (woken by the restore's own scale-up or
                            status write) do nothing */
    struct port_map *ports;
    size_t n_ports;
    cJSON *conditions; /* our copy of status.conditions, sent whole when it changed */
    /* runtime */
    struct svc_state *svc;
    bool busy;             /* a transition is in flight */
    int evals_pending;     /* Prometheus answers still awaited in this check */
    uint64_t eval_done_ms; /* when the last scale-down check had all its answers (clock_mono_ms), 0
                              never: the next takes only answers to queries sent after that */
    bool eval_blocked;     /* some trigger or the uptime check said no */
    /* why it is unhealthy (es_text, at most 511 bytes), or NULL */
    char *eval_reason;
    bool eval_unhealthy; /* ... because Prometheus could not answer properly */
    bool wake_inflight;  /* a target_wake is in flight */
    bool wake_again;     /* another wake was asked for meanwhile: one more runs after it */
    /* Set when entering proxy mode, cleared by a wake or a /scale read with replicas > 0: until
     * then the ready endpoints still listed are the old pods on their way out (the scale-to-0
     * patch is not applied yet), not a reason for the serve switch. Without it, es_reconcile
     * switched back to serve 2 ms after every trigger scale-down (test_controller.py). */
    bool awaiting_wake;
    /* The addresses of the pods that were ready endpoints when proxy mode began: they are on
     * their way out and do not count for the serve switch until leaving_until_ms (clock_mono_ms,
     * LEAVING_MAX_MS on). A wake answered before the EndpointSlice controller listed them as
     * terminating found one still ready and switched straight back to serve, deleting the
     * resolver slice: kube-proxy had only that pod left, which had exited (holdfast holds, and
     * so wakes, once relaying to it fails). A new pod gets another address: the old one is still
     * its pod's while it is listed. A list of the pods (leaving_check) tells which are gone:
     * those never count again while they are listed (CI on a loaded machine: the new pod was
     * ready 30 s after proxy mode began, the EndpointSlice controller still behind, and the
     * serve switch went to the old pod once the wait was up); an entry leaves once no slice
     * lists its address ready (es_leaving_poll), so an address given to a new pod later counts.
     * Malloc'd, freed by es_free. */
    struct leaving_pod *leaving;
    size_t n_leaving;
    uint64_t leaving_until_ms;
    /* The target's metadata.generation last shown by the workload watch (0: none yet), and its
     * value when proxy mode began: a status observed at a newer generation that shows a ready
     * replica and none terminating says the leaving pods stay (a scale to zero undone before
     * the ReplicaSet controller removed them, found by the soak: the serve switch waited the
     * whole LEAVING_MAX_MS). */
    long long wl_generation, leaving_generation;
    /* A pod list in flight that tells which leaving pods stay (leaving_check), and the proxy
     * episode it is for: leaving_record starts a new one. leaving_polled: the list asked for
     * before the wait is up (es_leaving_poll) was sent this episode. */
    bool leaving_check_inflight, leaving_polled;
    unsigned leaving_epoch;
    /* The target's pod selector as a label selector (from the workload watch; NULL: none yet):
     * what leaving_check lists the pods by. Malloc'd, freed by es_free. */
    char *wl_selector;
    bool status_dirty; /* a status write failed: the next poll writes it again */
    bool wake_failed;  /* the last wake's scale call failed: wake_on_retry tries again */
    uint64_t
        next_check_ms; /* when evaluate_on_poll next reads the target's /scale (clock_mono_ms) */
    bool scale_call_failed; /* not_ready_reason and ScaleUpFailed come from that failure */
    char *not_ready_reason; /* why the woken target has no ready pod, for 504s; or NULL */
    bool had_endpoints;     /* some port had ready endpoints in the last snapshot */
    int status_inflight;    /* status writes not yet answered: our mode/conditions are newer */
    /* The status as last written (status_want's members), or as the API showed it when this
     * replica adopted it (status_shown); NULL: not known. A sync writes what differs. */
    cJSON *status_written;
    /* What the write in flight carries (status_want's members), written once it succeeds. */
    cJSON *status_pending;
    /* A sync asked for while a write was in flight (status_retouch: one that writes even when
     * nothing changed): it runs when that write is answered, against the state then. Two merge
     * patches in flight at once can be applied in either order (separate connections), and the
     * older one applied last left status.mode wrong for good (test_controller's long-outage
     * test, about 1 run in 18: {mode: serve} from a /scale read and {mode: proxy} from the
     * workload watch, sent 1 ms apart). */
    bool status_resync, status_retouch;
    char *awaited_rv;    /* resourceVersion our last status write made (es_text, at most 63
                            bytes), or NULL; until the informer shows it, older echoes must not
                            undo our mode/conditions */
    uint64_t awaited_ms; /* when it was set (given up after STATUS_AWAIT_ECHO_MS) */
    /* The last resourceVersions the informer showed while a status write was in flight (a
     * ring; a longer one is not kept): was the write's echo already delivered? Its echo can only
     * come while it is in flight or after its answer, so the ring is kept only meanwhile:
     * malloc'd by es_parse_status, freed when the last write in flight is answered, NULL
     * otherwise. */
    status_rv *seen_rv;
    unsigned seen_next; /* the ring's next slot */
    /* The last ElastiService the informer showed while a status write was in flight (its
     * metadata and status; its spec too when it has no generation), kept only meanwhile, as
     * seen_rv: when the write's answer finds a later version came after its echo, that version
     * is taken from here (the cache keeps only struct es_cached). Freed with seen_rv. */
    cJSON *seen_last;
    /* acknowledging and proving liveness */
    int64_t status_gen;     /* status.observedGeneration as the informer shows it */
    int64_t acked_gen;      /* the generation our last successful status write carried */
    int64_t reconciled_at;  /* status.lastReconciledTime (wall seconds), 0 unknown */
    uint64_t evaluated_ms;  /* when this replica last evaluated it (clock_mono_ms), 0 never */
    uint64_t busy_since_ms; /* when the evaluation in flight began */
    double busy_throttled;  /* kube_client_throttled_seconds then (an API call), or -1 (none) */
    const char *busy_what;  /* what it waits for: "reading /scale", "querying Prometheus" */
    bool stuck_logged;      /* the evaluation in flight was logged as stuck */
    bool settle_logged;     /* a scale to zero waiting out DECIDE_API_SETTLE_MS was logged */
    /* why the last poll did not evaluate it (a string literal, es_skip takes only those),
     * NULL: evaluated */
    const char *skip_reason;
    char *target_key;     /* "plural/ns/name" under which by_target lists it, or NULL */
    unsigned scale_epoch; /* moves with every workload watch event acted on: a /scale
                             read sent before one is older than what the watch said */
    bool watch_zero;      /* the workload watch last showed spec.replicas 0 */
    /* the switch to zero; the data path first */
    struct event *switch_ev; /* the next probe, or the end of the grace period */
    struct pathprobe *probe; /* in flight */
    bool switching;
    uint64_t switch_started_ms;
    uint64_t switch_retry_ms;   /* abandoned: no new attempt before this (clock_mono_ms) */
    unsigned switch_probes;     /* probes sent in this attempt */
    char *switch_why;           /* the ScaledToZero message once it is done (es_text, <= 255) */
    char *switch_last;          /* what the last probe found (es_text, at most 255 bytes) */
    uint64_t slices_deleted_ms; /* when its resolver slices were last deleted (clock_mono_ms) */
    /* deleted while it held connections: its route stays (c->lingering) until they are
     * answered by the restored pods, or its hold timeout has passed */
    bool lingering;
    uint64_t linger_until_ms;
    /* its route in the published snapshots (built again only when marked: routes_changed) */
    struct route_service *route; /* one reference, or NULL: none */
    size_t route_slot;           /* its slot in the snapshots, while route_slotted */
    bool route_slotted;
    bool route_dirty;                   /* in c->dirty: built again at the next publish */
    struct es *dirty_prev, *dirty_next; /* c->dirty */
    /* the wake's size and the group wake (wake.c, wakewith.c) */
    long wake_held;           /* held connections when the wake or raise in flight was sent */
    int wake_want;            /* the replicas it asked for (decide_wake_replicas) */
    cJSON *wakewith_replicas; /* status.wakeWithReplicas: "Kind/name" -> count before zero */
    unsigned wakewith_failed; /* bit i: spec.wakeWith[i]'s last scale call failed */
    bool wakewith_sent;       /* the wake in flight sent the spec.wakeWith members along */
    int keda_max_replicas;    /* the KEDA ScaledObject's maxReplicaCount as this replica's last
                                 pause or resume patch answered it (0: not known) */

    /* the phases of a cold start (coldstart.c): collected from the wake sent to the switch to
     * serve's pod list (the leader's view), then written as status.lastColdStart */
    struct coldstart cold;  /* the moments of the cold start in progress */
    bool cold_open;         /* a wake was sent (or a request held) and is not recorded yet */
    uint64_t cold_held_ns;  /* its first held request (monotonic), 0 unknown */
    int cold_waits;         /* checks left for the first held byte (coldstart_run.c) */
    struct event *cold_ev;  /* the next of those checks (NULL until the first); freed by
                               es_free, so a check never outlives e (nor leaks at shutdown) */
    cJSON *last_cold_start; /* status.lastColdStart (the last cold start recorded or adopted),
                               NULL none; freed by es_free */

    /* early readiness (early.c): the watch of the woken target's pods and their probes, from
     * the first held connection to the switch to serve; NULL none. early_stop frees it. */
    struct early_set *early;
    bool early_off_said; /* this proxy episode's wake was counted as opted out */
};

struct resolver_ep {
    char ip[64];
    char node[256];
};

struct controller {
    struct event_base *base;
    struct dataplane *dp;
    struct controller_opts opt;
    struct kubeconfig *kc;
    struct kube_client *kube;
    struct http_client *http;
    struct prom_hub *prom; /* trigger queries: shared within a polling interval, paced */
    struct informer *inf_es, *inf_svc, *inf_slices, *inf_resolver;
    struct es *list;
    struct es *lingering; /* deleted, routes kept for their held connections (es.lingering) */
    /* Indexes, so that nothing is linear in the number of ElastiServices or EndpointSlices
     * per event (DESIGN: 10,000 ElastiServices): */
    struct strmap by_name;       /* "ns/name" -> struct es */
    struct strmap by_service;    /* "ns/service" -> struct pset of its ElastiServices */
    struct strmap slices_by_svc; /* "ns/service" -> struct pset of its EndpointSlice names */
    struct ports ports;          /* the resolver ports the ElastiServices hold */
    struct event *publish_ev, *poll_ev, *wake_ev, *wake_retry_ev;
    struct event *relisten_ev; /* a resolver port could not be opened: publish again in 1 s */
    bool leader;               /* mirrors leader_is_leader, kept by the election's callbacks */
    struct leader *election;
    struct kube_client *kube_lease; /* its own client: renewals never queue behind reconciles */
    struct kube_client *kube_wake;  /* its own client: wakes never queue behind /scale polls */
    struct es *poll_cursor;         /* where the next poll round resumes, NULL: the list head */
    bool polls_behind;              /* logged once: the rate limit cannot keep the interval */
    struct events *events;
    struct resolver_ep *resolvers;
    size_t n_resolvers;
    /* Route snapshots, built incrementally: only the ElastiServices in `dirty` are built
     * again, the routes of the rest are shared with the snapshot before. */
    struct route_snapshot *snap;     /* the last one published (one reference), or NULL */
    struct es *dirty;                /* whose route must be built again (es.route_dirty) */
    struct route_gone {              /* routes of freed ElastiServices, emptied at the next */
        size_t slot;                 /* publish */
        struct route_service *route; /* one reference, or NULL */
    } * gone;
    size_t n_gone, cap_gone;
    size_t *free_slots; /* slots no ElastiService holds, below next_slot */
    size_t n_free_slots, cap_free_slots, next_slot;
    uint64_t routes_built;   /* route_services built (holdfast_route_services_built_total) */
    uint64_t spec_parses;    /* specs parsed (holdfast_controller_spec_parses_total) */
    bool shared_port_failed; /* logged once */
    bool routed;             /* a snapshot was published after every informer synced */
    uint64_t last_change_ns; /* when an informer last reported a Service/EndpointSlice change */
    uint64_t change_ns;      /* the oldest change not yet in a published snapshot, 0 none */
    uint64_t reconciles, reconcile_errors, prom_errors, wakes_sent, scale_downs, switches;
    uint64_t abandoned;      /* switches to zero given up: the data path never reached holdfast */
    uint64_t propagation_ms; /* the longest a resolver slice took to reach the data path */
    uint64_t api_back_ms;    /* clock_mono_ms when the API server answered again after failing */

    uint64_t wake_raises; /* woken targets raised while their pods started */
    /* early readiness (early.c): probes in flight, run by result (0 failed, 1 passed), pods
     * sent held connections before the kubelet's Ready, and those left to the kubelet */
    int early_inflight;
    uint64_t early_probes[2];
    uint64_t early_ready_pods;
    uint64_t early_fallbacks[EARLY_FALLBACK_N];
    uint64_t wakewith_scaled; /* spec.wakeWith members scaled up from zero */
    /* Liveness: a round is complete when every ElastiService was evaluated after it began. */
    uint64_t round_start_ms, round_done_ms;
    /* holdfast_cold_start_phase_seconds: the time between consecutive known phases of the cold
     * starts recorded, by the phase that ends it (COLD_SCALE_SENT .. COLD_FIRST_BYTE) */
    struct hist cold_phase_seconds[COLD_N];
    double round_throttled; /* kube_client_throttled_seconds when the round began */
    uint64_t evaluations;   /* evaluations completed (a /scale read answered, or a skip) */
    bool wedged_logged;     /* the round is past the liveness bound: logged once */
    char wedged_why[512];   /* what /healthz says while it is */
    /* The scale targets, watched (lean: name and spec.replicas only), so a hand scale to zero
     * is seen at once rather than at the next poll; rollouts only once some ElastiService
     * targets one (the CRD may not exist). */
    struct informer *inf_deploy, *inf_sts, *inf_rollout;
    struct strmap by_target; /* "plural/ns/name" -> struct pset of its ElastiServices */
    struct workload_watch {
        struct controller *c;
        const char *resource;
    } wl_deploy, wl_sts, wl_rollout;
};

/*
 * What an API call's callback needs to find its ElastiService again (es_ref_take), as it may
 * be gone by then; what the call was sent with.
 */
struct es_ref {
    struct controller *c;
    char *ns, *name;
    int64_t generation;   /* of a status write: what it acknowledges */
    unsigned scale_epoch; /* of a /scale read: e->scale_epoch when it was sent; of a leaving
                             check: e->leaving_epoch */
    int64_t scaled_up;    /* of a status write: the lastScaledUpTime it carries, or 0 */
    int replicas;         /* of a leaving check: the workload's spec.replicas then */
};

/* ---- small helpers (controller.c) ---- */

/* The pod among `pods` (a PodList) whose address is ip, or NULL (borrowed from pods). */
const cJSON *es_pod_with_ip(const cJSON *pods, const char *ip);

static inline char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- controller.c: what the informers know ---- */

/* e's Service as the informer caches it (borrowed until control returns to the loop), or
 * NULL. */
const struct service_cached *es_service(const struct es *e);

/* Ready pod endpoints of one of e's Service ports, by name (caller frees *eps). */
size_t es_ready_endpoints(const struct es *e, const char *port_name, struct ready_endpoint **eps);

/* ---- routes.c: route snapshots ---- */

/*
 * How a Service port's held connections are treated: HTTP/1 (probes answered; h2c and TLS
 * still detected) unless its appProtocol, or else its name's prefix, says the bytes are not
 * HTTP (Istio's port naming convention): then they are held opaque and woken on accept.
 */
enum svc_protocol routes_port_protocol(const struct service_cached *service, const char *port_name);

/* e's route must be built again: marked, and a publish scheduled. Every change to what a route
 * is built from goes through here: the ElastiService (spec, status.ports, mode), its Service,
 * its EndpointSlices, the reason its target is not ready. */
void routes_changed(struct es *e);

/* e is freed: its route leaves the snapshots at the next publish. */
void routes_forget(struct es *e);

/* Schedules a publish on the loop's next turn (c->publish_ev). */
void routes_schedule(struct controller *c);

/* Publishes e's marked route now, not on the loop's next turn: holdfast listens on a resolver
 * port before any write names it (a resolver EndpointSlice, status.ports). */
void routes_publish_now(struct es *e);

/* c->publish_ev's callback: builds the marked routes and publishes a snapshot. */
void routes_on_publish(evutil_socket_t fd, short what, void *arg);

/* c->relisten_ev's callback: a resolver port could not be opened, publish again. */
void routes_on_relisten(evutil_socket_t fd, short what, void *arg);

/* ---- controller.c: shared with the other files ---- */

/* Allocates a resolver port for every Service port that has none (leader). */
bool es_allocate_ports(struct es *e);

/* Sets one condition in e->conditions; true when it changed (a status write is due). */
bool es_cond_set(struct es *e, const char *type, bool status, const char *reason,
                 const char *message);

/*
 * The status sync: writes (merge patch) what of the status e wants (es_status_want: its mode
 * and resolver ports when this replica leads, its conditions, observedGeneration, a wake's
 * lastScaledUpTime) differs from what was last written, with observedGeneration and
 * lastReconciledTime; nothing when nothing differs, unless `touch` (a heartbeat, an
 * acknowledgment: the time of the look is what is written). One write at a time: asked for
 * while one is in flight, it runs when that one is answered.
 */
void es_status_sync(struct es *e, bool touch);

/* A reference to e for an API call's callback (es_ref_take frees it), or NULL when out of
 * memory. */
struct es_ref *es_ref_new(const struct es *e);

/* The ElastiService a callback was for, if it still exists; frees the reference. */
struct es *es_ref_take(struct es_ref *r);

/* A target call's callback that only logs a failure (`arg`: what it was, a string literal);
 * the next reconcile retries. */
void es_on_target_done(const struct target_result *res, const struct kube_error *err, void *arg);

/*
 * The one place the leader changes e's mode (status.mode is written by the caller, with the
 * conditions that go with it), running the entry actions and tracing old -> new (why) at
 * debug: proxy: awaiting_wake and the pods ready now recorded as on their way out; serve,
 * from proxy: those cleared, and the reason a woken target is not ready.
 */
void es_set_mode(struct es *e, enum es_mode mode, const char *why);

/* Creates or rewrites the resolver slices of e (leader, proxy mode). */
void resolver_slices_apply(struct es *e);

/* Deletes the resolver slices of e (serve mode, an abandoned switch, a deletion). */
void resolver_slices_delete(struct es *e);

/* Pauses (proxy mode) or resumes e's KEDA ScaledObject, when its spec names one. */
void es_keda_set(struct es *e, bool pause);

/* status.ports of e (a new array; NULL when out of memory). */
cJSON *es_ports_json(const struct es *e);

/* Records a Kubernetes Event on e (and logs it). */
void es_event(struct es *e, bool warning, const char *reason, const char *message);

/*
 * Whether some port of the target's Service has a ready endpoint that is not one of the pods on
 * their way out (e->leaving); the first one found goes to `first` ("ip:port") when not NULL.
 */
bool es_has_ready_endpoint(const struct es *e, char *first, size_t len);

/*
 * Each poll tick: forgets the pods on their way out (e->leaving) known gone that no slice lists
 * ready any more, and a moment before the wait for those not known either way is up, asks their
 * pods (once per proxy episode), so a pod gone is not counted when the wait ends.
 */
void es_leaving_poll(struct es *e);

/* Whether the informer caches a resolver EndpointSlice of e's Service. */
bool es_resolver_slice_cached(const struct es *e);

/* The resolver EndpointSlices of e's Service the informer caches (borrowed until control
 * returns to the loop), at most ES_RESOLVER_SLICES_MAX (one per IP family, and room to spare):
 * their number. */
#define ES_RESOLVER_SLICES_MAX 4
size_t es_resolver_slices(const struct es *e, const struct slice_cached **out);

/* ---- switch.c: the traffic switches ---- */

/*
 * serve -> proxy. A hand scale to zero (scale_down false) cannot be preceded by anything: the
 * resolver slice goes in at once. Holdfast's own scale-down first shows that the data path
 * reaches holdfast (the switch to zero), and only then removes the last replica.
 */
void switch_enter_proxy(struct es *e, bool scale_down, const char *why);

/* proxy -> serve: the target has a ready endpoint (leader). */
void switch_enter_serve(struct es *e);

/* Stops an attempt without a word (the leadership went, the ElastiService went, a hand). */
void switch_cancel(struct es *e);

/* ---- controller.c: the caches ---- */

/* The ElastiService ns/name (by_name), or NULL. */
struct es *es_find(struct controller *c, const char *ns, const char *name);

/* The scale target as the workload watch caches it (name, resourceVersion, spec.replicas, ...),
 * or NULL: not watched (--watch-targets=false), not seen yet, or gone. */
const cJSON *es_cached_workload(const struct es *e);

/* ---- wake.c: the wake consumer ---- */

/*
 * Any replica: scale the target from 0 to the wake's size (minTargetReplicas, or with
 * spec.podCapacity the held connections' decide_wake_replicas), or, woken and still proxying,
 * raise it when more are held now (never lower it) (target_wake reads the scale and
 * patches with its resourceVersion, so replicas waking at once scale once, and a wake never
 * lowers a count someone raised). One wake per service is in flight at a time; wakes asked for
 * meanwhile fold into one more after it, never into none: the data plane asks once per burst
 * of held requests, so a wake dropped here would leave them held until their timeout.
 */
void wake_target(struct es *e);

/* c->wake_ev's callback: the data plane queued wakes (resolver/wakeq.h); each is acted on. */
void wake_on_queue(evutil_socket_t fd, short what, void *arg);

/*
 * A wake whose scale call failed (API unreachable, 503, ...) is retried every WAKE_REPEAT_MS
 * while the service still holds connections: held clients send nothing more, so no new wake
 * would come. (Bug found by test_controller.py's API-outage test: the wake was lost and the
 * held request waited for its hold timeout although the API was back.)
 */
void wake_on_retry(evutil_socket_t fd, short what, void *arg);

/* A woken target without a ready pod: find out why, for the 504s, a condition and an Event. */
void wake_diagnose(struct es *e);

/* ---- wakewith.c: the workloads that wake with the target (spec.wakeWith) ---- */

/* Any replica: each member at zero scaled to its count before zero (1 when unknown); never
 * awaited. A member missing or failing: WakeWith=False and a Warning Event name it. */
void wakewith_wake(struct es *e);

/* Leader, after the target's own scale to zero was sent: each member above zero remembered in
 * status.wakeWithReplicas, then scaled to zero. */
void wakewith_sleep(struct es *e);

/* Every status event: status.wakeWithReplicas taken, unless a write of ours is newer. */
void wakewith_status(struct es *e, const cJSON *status, bool ours_newer);

/* ---- the phases of a cold start (coldstart_run.c) ---- */

/* Any replica, a wake's scale call sent from zero: a cold start begins (unless one is open). */
void coldstart_wake_sent(struct es *e);
/* Its answer: the target was scaled up now. */
void coldstart_wake_answered(struct es *e);
/* Leader, the switch to serve on the endpoint "ip:port": lists the target's pods and records
 * the cold start (status.lastColdStart, the ColdStart Event, the phase histogram) when the
 * list answers and the first held byte was written (or the wait for it ends). */
void coldstart_on_serve(struct es *e, const char *endpoint);
/* Adopts status.lastColdStart as the API shows it (not while ours is newer). */
void coldstart_status_adopt(struct es *e, const cJSON *status, bool ours_newer);

/* ---- controller.c: conditions, mode, the Service ---- */

/* Whether the condition of this type has this reason. */
bool es_cond_reason_is(const struct es *e, const char *type, const char *reason);

/* status.mode's text for e's mode ("" for none). */
const char *es_mode_name(const struct es *e);

/*
 * Services holdfast refuses to proxy: headless ones (clusterIP None: clients resolve the pods'
 * own addresses, so a resolver EndpointSlice would not steer them) and ExternalName ones (no
 * endpoints at all). True with the reason in why.
 */
bool es_service_unsupported(const struct es *e, char *why, size_t len);

/* ---- evaluate.c: every polling interval (leader) ---- */

/* The poll's evaluation: read the target's /scale (on_scale goes on from there). */
void evaluate_check(struct es *e);

/*
 * What the target's spec.replicas means, from a poll's /scale read or from the workload watch
 * (poll false: no scale-down check, which runs once per polling interval only).
 */
void evaluate_apply_scale(struct es *e, int replicas, bool poll);

/* For prom_hub_free: an ask never answered (the controller stops). */
void evaluate_drop(void *arg);

/* ---- controller.c: writes and reconcile ---- */

/* A kube write's callback that only logs a failure (`arg`: what it was, a string literal);
 * the next reconcile retries. */
void es_on_write_done(cJSON *obj, const struct kube_error *err, void *arg);

/* A delete that finds the object gone (another replica, the namespace, a delete before) is done. */
void es_on_delete_done(cJSON *obj, const struct kube_error *err, void *arg);

/* Brings e's cluster objects in line with its spec, the caches and its mode (finalizer,
 * conditions, status.ports, resolver slices, the serve switch), then acknowledges a new
 * generation. Called on every change and every poll. */
void es_reconcile(struct es *e);

/* ---- evaluate.c: polling and liveness ---- */

/* c->poll_ev's callback: evaluates the ElastiServices due, paced by the API rate limit, and
 * keeps the liveness rounds (see evaluate.c). */
void evaluate_on_poll(evutil_socket_t fd, short what, void *arg);

/*
 * Rounds: one completes when every ElastiService was evaluated (or skipped, with its reason)
 * after the round began. An evaluation that never ends holds its round open: past the bound,
 * that is logged at warn with the object and what it waits for, and /healthz fails.
 *
 * A round waiting on the API rate limiter is slow, not wedged: the time the limiter accounts
 * for since the round (or the evaluation) began (calls that waited for a token and were
 * answered, 1/qps each) does not count against the bound. The first round after a start with
 * thousands of ElastiServices queues several writes for each (finalizer, resolver slice,
 * status, Event); at 20/s that is minutes, all of it progress. A round that makes none (no
 * answers: an API server that accepts and never answers, an evaluation that never ends while
 * the limiter is idle) still fails /healthz past the bound.
 */
void evaluate_liveness_update(struct controller *c);

/* Of the time since kube_client_throttled_seconds read `since`, the milliseconds the main
 * client's rate limiter accounts for (its pace, spent on calls that waited for a token and were
 * answered). */
double evaluate_throttled_ms(const struct controller *c, double since);

/* How long a round may take before /healthz fails: the longer of 5 polling intervals and 3
 * times what the rate limit needs for one read per ElastiService, plus 2 API deadlines (a call
 * that times out is an evaluation that failed, not a wedge). */
uint64_t evaluate_liveness_bound_ms(const struct controller *c);

/*
 * When an ElastiService checked at `now` is checked next: at its own phase of the interval
 * (from a hash of its name, so the same on every replica and after a restart), so the
 * checks, and the Prometheus queries they lead to, are spread over the interval instead of
 * coming all at once (every ElastiService is due at once after a start or a relist). The gap
 * is between half an interval and one interval: never longer than before, and phase is
 * reached by the second check.
 */
uint64_t evaluate_next_check_at(const struct es *e, uint64_t now, unsigned interval);

/* ---- early.c: early readiness ---- */

/* A connection is held (wake_on_queue): watch the target's pods and probe them, unless the
 * watch runs already, e is not in proxy mode, or spec.earlyReadiness is off. */
void early_begin(struct es *e);

/* At every reconcile: the watch ends once e leaves proxy mode (the switch to serve), is being
 * deleted, or its spec turns early readiness off. */
void early_sync(struct es *e);

/* Every poll: a watch with nothing held and no pod passed for a minute ends. */
void early_poll(struct es *e);

/* Ends the watch (the pods it sent connections to leave the route). */
void early_stop(struct es *e);

/* The workload's pod selector changed (or became known): the watch starts again with it. */
void early_selector_changed(struct es *e);

/* The pods that passed, as endpoints of e's Service port named port_name (its targetPort on
 * each pod); *eps is malloc'd (the caller frees it), NULL when none. */
size_t early_endpoints(const struct es *e, const char *port_name, struct ready_endpoint **eps);

/* ---- controller.c: deleted ElastiServices ---- */

/* Frees lingering routes that are done, or all of those named key (a new ElastiService). */
void es_linger_sweep(struct controller *c, const char *key);

/* ---- finalize.c: holdfast's finalizer ---- */

/* Being deleted (leader): restore, then remove the finalizer. */
void finalize_deleted(struct es *e, const struct es_cached *obj);

/* Adds the finalizer when obj lacks it (leader). */
void finalize_ensure(struct es *e, const struct es_cached *obj);

#endif
