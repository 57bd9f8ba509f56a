/*
 * spec: an ElastiService's spec (JSON, as the API server stores it) read into a plain struct,
 * or refused with one message naming the field. No controller, no I/O: the controller parses a
 * spec only when its metadata.generation moves (es_spec_changed), not on the echoes of its own
 * status writes, so the trigger queries and PCRE2 probe rules are built once per spec.
 *
 * Defaults (KubeElasti's): minTargetReplicas 1, cooldownPeriod 900 s, holdTimeoutSeconds 600,
 * maxHeldConnections 10000. An absent or non-positive number takes the default
 * (cooldownPeriod: a negative one).
 * holdfast's spec.waitingPage is off when absent (waiting_page_parse, dataplane.h), and its
 * spec.earlyReadiness on; unlike the numbers above, a bad value there is refused, naming the
 * field.
 */
#ifndef HOLDFAST_CONTROLLER_SPEC_H
#define HOLDFAST_CONTROLLER_SPEC_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "controller/prom.h"
#include "controller/target.h"
#include "resolver/dataplane.h"

#define SPEC_DEFAULT_COOLDOWN_S 900
#define SPEC_DEFAULT_HOLD_TIMEOUT_S 600
#define SPEC_DEFAULT_MAX_HELD 10000
/* spec.podCapacity and spec.maxWakeReplicas: 1 to these (the CRD's bounds too) */
#define SPEC_MAX_POD_CAPACITY 10000000
#define SPEC_MAX_WAKE_REPLICAS 100000
/* spec.wakeWith: at most this many members */
#define SPEC_MAX_WAKE_WITH 16

struct route_probes;

/* One ElastiService's spec. Every pointer is owned (NULL: absent); free with spec_clear. */
struct es_spec {
    char *service;                 /* spec.service: the target Service */
    struct target_ref target;      /* spec.scaleTargetRef: the workload to scale */
    bool target_ok;                /* target parsed */
    int min_replicas;              /* spec.minTargetReplicas: what a wake scales to */
    unsigned cooldown_s;           /* spec.cooldownPeriod: idle this long since the last scale-up */
    struct prom_trigger *triggers; /* spec.triggers, parsed */
    size_t n_triggers;
    char *schedule, *duration;   /* spec.enabledPeriod's, or NULL */
    bool has_period;             /* spec.enabledPeriod is an object */
    struct route_probes *probes; /* spec.probeResponse, compiled (one reference) */
    unsigned hold_timeout_s;     /* spec.holdTimeoutSeconds */
    size_t max_held;             /* spec.maxHeldConnections */
    char *keda;                  /* spec.autoscaler.name when its type is "keda", or NULL */
    struct waiting_page_spec waiting_page; /* spec.waitingPage (holdfast addition) */
    /* spec.earlyReadiness.enabled (holdfast addition; true when absent): held connections go
     * to a pod that passed holdfast's own run of its readinessProbe (early.c) */
    bool early_readiness;

    /* the wake's size and its group (holdfast additions) */
    int pod_capacity;             /* spec.podCapacity: held connections per pod (0: absent) */
    int max_wake_replicas;        /* spec.maxWakeReplicas: most a wake asks for (0: absent) */
    struct target_ref *wake_with; /* spec.wakeWith: the workloads woken with the target */
    size_t n_wake_with;
};

/*
 * Parses `spec` (the object under "spec", may be NULL) into *out, which it clears first
 * (out must be zeroed or hold a parsed spec). `prom_address` and `prom_authorization` (may be
 * NULL) are the triggers' defaults (prom_trigger_parse). Returns 0, or -1 with one message in
 * err ("spec.service: required", a trigger's, the probe rules', the scale target's).
 *
 * A refused spec keeps what was parsed before the refusal, in this order: the numbers and
 * their defaults; then (unless a string holds a NUL character, refused first) service,
 * enabledPeriod and keda; the scale target (target_ok); the triggers before the one refused.
 * The controller still indexes a refused ElastiService by its Service and target.
 * podCapacity, maxWakeReplicas (at least minTargetReplicas) and wakeWith (at most 16 members,
 * none twice, none the target itself) are checked last, once everything else parsed.
 */
int spec_parse(const cJSON *spec, const char *prom_address, const char *prom_authorization,
               struct es_spec *out, char *err, size_t errlen);

/* Frees what *s holds and zeroes it. */
void spec_clear(struct es_spec *s);

#endif
