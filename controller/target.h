/*
 * target: the workload an ElastiService scales (spec.scaleTargetRef) — which resource it is, its
 * /scale subresource, the wake ("scale up from zero, once"), KEDA pause/resume, and, when a wake
 * does not produce a ready pod, why.
 *
 * Kinds. apps/v1 Deployment and StatefulSet, argoproj.io/v1alpha1 Rollout. Like KubeElasti
 * (pkg/k8shelper KindToResource: lower-case the kind, add "s" unless it already ends in "s";
 * group and version from apiVersion), a kind is matched without regard to case and in singular
 * or plural form, so KubeElasti's aliases `deployments` and `rollouts` work, and so does anything
 * KubeElasti's scale path would have turned into the same resource. KubeElasti's CRD lets only
 * `deployments`, `rollouts`, `Deployment`, `StatefulSet` and `Rollout` through; holdfast's CRD
 * keeps that enum. Unlike KubeElasti, which sends a mismatched pair (`apps/v1` + `Rollout`) to
 * the API server and fails there at every scale, the pair is checked here and refused with a
 * message naming the field.
 *
 * Operations are asynchronous on a kube client (controller/kube.h): each returns a handle, then
 * calls its done callback exactly once (never from inside the starting call) with a result or a
 * kube_error. Cancelling the handle means no callback. Nothing here logs an error the caller
 * gets: it logs only what it decided itself (a wake that patched, a ScaledObject that is gone,
 * a pod list it could not read while diagnosing).
 *
 * - target_get_scale: GET .../scale.
 * - target_scale_to: merge-PATCH .../scale {"spec":{"replicas":N}} (scale-down, restore).
 * - target_wake: only when spec.replicas is 0, patch it to minReplicas; otherwise nothing. The
 *   patch carries the resourceVersion read, so two replicas (or a user, or KEDA) racing cannot
 *   be overwritten: a 409 Conflict re-reads and decides again. Reports whether it patched.
 *   target_wake_at skips the first read when a cache already shows the zero and its version.
 * - target_raise_at: the same for a count that is not zero: patch spec.replicas to N only when it
 *   is below N (a wake sized by the connections held, raised while the pods start), with the
 *   version read; never lowers it.
 * - target_keda_pause / target_keda_resume: merge-PATCH the keda.sh/v1alpha1 ScaledObject's
 *   annotations: pause sets `autoscaling.keda.sh/paused-replicas: "0"`, resume removes it and
 *   `autoscaling.keda.sh/paused`. A ScaledObject that does not exist is not an error: the result
 *   says found=false (and it is logged).
 * - target_diagnose: reads the workload, the pods its spec.selector selects, and (when pods are
 *   missing) its Warning events, and answers with a CamelCase reason and a message, or an empty
 *   reason when nothing is wrong (yet). The pure rules are target_diagnose_objects.
 *
 * Thread model: the control thread only, like kube.
 */
#ifndef HOLDFAST_TARGET_H
#define HOLDFAST_TARGET_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "controller/kube/kube.h"

#define TARGET_KEDA_PAUSED_REPLICAS "autoscaling.keda.sh/paused-replicas"
#define TARGET_KEDA_PAUSED "autoscaling.keda.sh/paused"

enum target_kind {
    TARGET_DEPLOYMENT,  /* apps/v1 deployments */
    TARGET_STATEFULSET, /* apps/v1 statefulsets */
    TARGET_ROLLOUT,     /* argoproj.io/v1alpha1 rollouts */
};

/* A parsed spec.scaleTargetRef. Plain data: copy it freely. */
struct target_ref {
    enum target_kind kind;
    struct kube_resource res; /* group/version/plural, static strings, namespaced */
    char name[254];           /* the workload's name (a DNS subdomain, at most 253) */
};

/* The /scale subresource (autoscaling/v1 Scale). Absent numbers are 0, as Scale omits zeros. */
struct target_scale {
    int spec_replicas;         /* spec.replicas: what is asked for */
    int status_replicas;       /* status.replicas: pods the workload's controller has */
    char selector[1024];       /* status.selector, "" when absent or too long */
    char resource_version[64]; /* metadata.resourceVersion of the workload */
};

/* Why a workload has no ready pod. reason is "" when nothing is wrong (yet). */
struct target_diagnosis {
    char reason[64];    /* CamelCase: FailedCreate, ImagePullBackOff, Unschedulable, ... */
    char message[1024]; /* "<reason>: <what the cluster said>", cut at a UTF-8 boundary */
    char object[320];   /* where it was read: "Deployment/web", "Pod/web-7d9f-x2x1" */
    int pods;           /* selected pods, not terminating */
    int ready_pods;     /* of which Ready */
};

/* What an operation found. Only the fields of the operation that ran are set. */
struct target_result {
    struct target_scale scale;    /* get_scale, scale_to, wake: the Scale read or written last */
    bool patched;                 /* wake: true when it patched replicas 0 -> min (raise: up) */
    int from;                     /* wake, raise: spec.replicas before the patch */
    bool found;                   /* keda_*: false when the ScaledObject does not exist */
    int keda_max_replicas;        /* keda_*: its spec.maxReplicaCount as patched (0: absent) */
    struct target_diagnosis diag; /* diagnose */
};

/* Called once when an operation ends: err NULL and res set, or err set (res still points at a
 * result with whatever was read before the failure). Both are borrowed for the call. */
typedef void (*target_done_fn)(const struct target_result *res, const struct kube_error *err,
                               void *arg);

struct target_op;

/*
 * Parses spec.scaleTargetRef ({"apiVersion","kind","name"}). Returns 0, or -1 with a message
 * naming the field ("spec.scaleTargetRef.kind: \"Job\" is not a scalable kind; ...") in err.
 */
int target_ref_parse(const cJSON *scale_target_ref, struct target_ref *out, char *err,
                     size_t errlen);

/* target_ref_parse of a reference at `path` (messages name "<path>.kind", ...). With
 * default_api_version, an absent or empty apiVersion means the kind's own (spec.wakeWith). */
int target_ref_parse_at(const cJSON *ref, const char *path, bool default_api_version,
                        struct target_ref *out, char *err, size_t errlen);

/* "Deployment", "StatefulSet" or "Rollout". */
const char *target_kind_name(enum target_kind kind);

/* The ScaledObject resource (keda.sh/v1alpha1 scaledobjects). */
extern const struct kube_resource target_keda_scaledobjects;

/* The operations. `ns` is the ElastiService's (and workload's) namespace; strings and ref are
 * copied. Each returns a handle valid until done returns, or NULL (nothing will be called) when
 * an argument is invalid or memory runs out. */
struct target_op *target_get_scale(struct kube_client *c, const struct target_ref *ref,
                                   const char *ns, target_done_fn done, void *arg);

/* replicas >= 0; unconditional (no resourceVersion). */
struct target_op *target_scale_to(struct kube_client *c, const struct target_ref *ref,
                                  const char *ns, int replicas, target_done_fn done, void *arg);

/* min_replicas below 1 counts as 1 (KubeElasti does the same). Up to 5 reads on conflicts. */
struct target_op *target_wake(struct kube_client *c, const struct target_ref *ref, const char *ns,
                              int min_replicas, target_done_fn done, void *arg);

/* target_wake without its first read, when a cache (the workload watch) shows spec.replicas 0 at
 * `resource_version` (the workload's, which its /scale carries): the patch goes at once with that
 * version, so it applies only if nothing changed since; a 409 reads and decides as target_wake
 * does. NULL or "" resource_version: target_wake. */
struct target_op *target_wake_at(struct kube_client *c, const struct target_ref *ref,
                                 const char *ns, int min_replicas, const char *resource_version,
                                 target_done_fn done, void *arg);

/* Raises spec.replicas to `replicas` when it is below (0 included), never lowers it. When a cache
 * shows the workload at `cached_replicas` (>= 0) with `resource_version`, the patch goes at once
 * on that version, and nothing is sent (NULL) if the cache shows enough already; otherwise (NULL
 * or "" version, or cached_replicas < 0) it reads first. A 409 reads and decides again. */
struct target_op *target_raise_at(struct kube_client *c, const struct target_ref *ref,
                                  const char *ns, int replicas, int cached_replicas,
                                  const char *resource_version, target_done_fn done, void *arg);

struct target_op *target_keda_pause(struct kube_client *c, const char *ns,
                                    const char *scaled_object, target_done_fn done, void *arg);
struct target_op *target_keda_resume(struct kube_client *c, const char *ns,
                                     const char *scaled_object, target_done_fn done, void *arg);

/* A workload that does not exist is a diagnosis (reason TargetNotFound), not an error. A pod or
 * event list that fails is logged and the answer is made from what was read. */
struct target_op *target_diagnose(struct kube_client *c, const struct target_ref *ref,
                                  const char *ns, target_done_fn done, void *arg);

/* ---- pure parts (unit-tested) ---- */

/* Reads an autoscaling/v1 Scale. Returns 0, or -1 when scale is not an object. */
int target_scale_parse(const cJSON *scale, struct target_scale *out);

/*
 * Writes a LabelSelector (spec.selector: matchLabels and matchExpressions with In, NotIn,
 * Exists, DoesNotExist) in the labelSelector query syntax: "app=web,tier in (a,b),!canary".
 * Returns 0, or -1 when it is missing, empty (it would select every pod), malformed, or does not
 * fit.
 */
int target_label_selector(const cJSON *selector, char *buf, size_t len);

/*
 * The problem one pod shows, if any: PodScheduled False (Unschedulable), an init or app
 * container waiting for a reason other than ContainerCreating/PodInitializing (ErrImagePull,
 * ImagePullBackOff, CrashLoopBackOff with the last exit code, CreateContainerConfigError, ...),
 * or phase Failed (Evicted). Terminating pods have none. Returns true and fills reason, message
 * and object when there is one.
 */
bool target_pod_problem(const cJSON *pod, struct target_diagnosis *out);

/*
 * The diagnosis from what was read: `workload` (the Deployment/StatefulSet/Rollout object),
 * `pods` (a PodList, or NULL) and `events` (an EventList about the workload, or NULL). In order:
 * 1. a workload condition that says pods cannot be made: ReplicaFailure True (FailedCreate with
 *    the quota message), or InvalidSpec True (Rollout);
 * 2. the newest selected pod with a problem (target_pod_problem);
 * 3. the newest Warning FailedCreate event, only while the workload has fewer pods than asked
 *    (a StatefulSet has no ReplicaFailure condition: that event is all it says);
 * 4. Progressing False (ProgressDeadlineExceeded).
 * Otherwise reason is "". pods and ready_pods are counted in every case. Returns true when a
 * reason was found.
 */
bool target_diagnose_objects(const cJSON *workload, const cJSON *pods, const cJSON *events,
                             struct target_diagnosis *out);

#endif
