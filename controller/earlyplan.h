/*
 * earlyplan: early readiness's reading of a pod, as pure functions over cJSON (no controller, no
 * I/O; early.c runs what this decides). A woken target's pod is read into a plan: its address,
 * whether it is leaving or already Ready by the kubelet, and for each container its state and
 * the checks the kubelet would run (the startupProbe, then the readinessProbe) in a form holdfast
 * can send: an HTTP GET (httpGet: port by number or container port name, path, host, scheme,
 * httpHeaders), a TCP connect (tcpSocket) or a gRPC health Check (grpc). A pod holdfast cannot
 * probe the way the kubelet would is left to the kubelet, with the reason: an `exec`
 * readinessProbe (it runs inside the container), no readinessProbe at all (the kubelet marks
 * such a pod Ready as soon as it runs), readiness gates (another controller must agree), or a
 * probe that cannot be sent (a port name no container port has, a header with a line break).
 *
 * Which check is due when (early_next) follows the kubelet: a startupProbe passes before the
 * readinessProbe is run (an exec one: the kubelet's `started: true` says it passed), each
 * probe's initialDelaySeconds counts from its container's start, and successThreshold
 * consecutive passes make a probe pass. The pod passes once every container's readinessProbe
 * passed (a container without one: once it runs).
 */
#ifndef HOLDFAST_CONTROLLER_EARLYPLAN_H
#define HOLDFAST_CONTROLLER_EARLYPLAN_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bounds of what a plan takes from a pod (the API server's own limits are far above what a pod
 * spec uses): containers probed, headers per probe. */
#define EARLY_MAX_CONTAINERS 32
#define EARLY_MAX_HEADERS 16

enum early_check_kind {
    EARLY_CHECK_NONE, /* no probe of this kind */
    EARLY_CHECK_HTTP, /* httpGet */
    EARLY_CHECK_TCP,  /* tcpSocket */
    EARLY_CHECK_GRPC, /* grpc: grpc.health.v1.Health/Check */
    EARLY_CHECK_EXEC, /* exec: only the kubelet can run it */
};

/* One probe, ready to send. Strings are owned (early_plan_clear frees them). */
struct early_check {
    enum early_check_kind kind;
    unsigned port;
    bool https;     /* httpGet.scheme HTTPS (the kubelet does not verify the certificate) */
    char *path;     /* httpGet.path, starting with '/' */
    char *host;     /* httpGet.host or tcpSocket.host, or NULL: the pod's address */
    char **headers; /* httpGet.httpHeaders as "Name: value" lines */
    size_t n_headers;
    char *grpc_service;    /* grpc.service, or NULL: the server's overall health */
    long timeout_ms;       /* timeoutSeconds (default 1 s) */
    long initial_delay_ms; /* initialDelaySeconds */
    int success_threshold; /* successThreshold (default 1) */
    int failure_threshold; /* failureThreshold (default 3) */
};

struct early_container {
    char *name;
    bool running;       /* state.running */
    int64_t started_ms; /* state.running.startedAt (wall ms, whole seconds), -1 unknown */
    bool started;       /* the kubelet's `started`: its startupProbe passed (or it has none) */
    int restarts;       /* restartCount */
    struct early_check startup, ready;
};

/* Why a pod is left to the kubelet. */
enum early_fallback {
    EARLY_PROBE,             /* not: holdfast probes it */
    EARLY_FALLBACK_EXEC,     /* some container's readinessProbe is exec (an exec startupProbe is
                                the kubelet's: its `started` says when it passed) */
    EARLY_FALLBACK_NONE,     /* no container has a readinessProbe */
    EARLY_FALLBACK_GATES,    /* spec.readinessGates */
    EARLY_FALLBACK_BAD,      /* a probe holdfast cannot send as the kubelet would (why says) */
    EARLY_FALLBACK_DISABLED, /* spec.earlyReadiness.enabled false (counted per wake, not pod) */
    EARLY_FALLBACK_N
};

/* A pod as early readiness reads it. Owned strings and arrays: early_plan_clear frees them. */
struct early_plan {
    char ip[64];        /* status.podIP, "" none yet */
    bool deleting;      /* metadata.deletionTimestamp */
    bool kubelet_ready; /* the Ready condition is True */
    bool running;       /* every container is running */
    enum early_fallback fallback;
    char why[256]; /* the fallback's detail, naming the container and field */
    struct early_container *containers;
    size_t n_containers;
    struct early_port {
        char *name;
        unsigned port;
    } * ports; /* every container's named ports (a Service's named targetPort) */
    size_t n_ports;
};

/* The label of a fallback in holdfast_early_readiness_fallbacks_total{reason}. */
const char *early_fallback_label(enum early_fallback f);

/* Reads `pod` (a Pod object, borrowed) into *out, cleared first (out zeroed or a plan). Returns
 * 0, or -1 when the pod is not an object with containers (out then falls back, why says). */
int early_plan_parse(const cJSON *pod, struct early_plan *out);

void early_plan_clear(struct early_plan *p);

/* The pod's port for a Service port whose targetPort is `number` (non-zero) or the container
 * port named `name` (non-NULL), else the Service port `port`; 0 when a name matches none. */
unsigned early_plan_port(const struct early_plan *p, unsigned number, const char *name,
                         unsigned port);

/* Where one container stands in the checks (early.c keeps one per container). */
struct early_progress {
    bool startup_passed;
    bool passed;     /* its readinessProbe passed (or it has none and runs) */
    int successes;   /* consecutive passes of the probe being run */
    int64_t seen_ms; /* when it was first seen running (wall ms), -1 not yet */
};

/* What to run next for a pod. */
struct early_due {
    int container; /* its index, -1: nothing to run (all passed, or waiting) */
    bool startup;  /* its startupProbe, else its readinessProbe */
    const struct early_check *check;
    int64_t at_ms; /* wall ms it is due (initialDelaySeconds), when container >= 0 */
};

/*
 * The next check for the pod (plan, prog[plan->n_containers]) at wall time now_ms: the first
 * container that has not passed, its startupProbe until that passed (the kubelet's `started`
 * counts for an exec one), then its readinessProbe. initialDelaySeconds counts from the
 * container's start: the earlier of when it was first seen running and its startedAt plus one
 * second (startedAt is cut to whole seconds), so a probe never runs before the kubelet's would
 * be allowed to. Containers that run and have no readinessProbe pass here. Returns whether every
 * container passed.
 */
bool early_next(const struct early_plan *plan, struct early_progress *prog, int64_t now_ms,
                struct early_due *due);

/* A check's result applied to prog (successThreshold consecutive passes, any failure resets):
 * returns whether that probe passed now. */
bool early_result(const struct early_check *check, struct early_progress *prog, bool startup,
                  bool ok);

/* The URL of an HTTP or gRPC check against the pod at ip ("http://10.0.0.5:8080/healthz",
 * IPv6 in brackets; gRPC: the health Check's path). Returns -1 when it does not fit. */
int early_url(const struct early_check *check, const char *ip, char *buf, size_t len);

/* The gRPC health Check request message, framed (5-byte prefix), into buf; its length, or 0 when
 * it does not fit. */
size_t early_grpc_request(const char *service, unsigned char *buf, size_t len);

/* Whether a gRPC health Check answer (its body: one framed HealthCheckResponse) says SERVING. */
bool early_grpc_serving(const unsigned char *body, size_t len);

#endif
