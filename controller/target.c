/*
 * target: the scale target of an ElastiService. See target.h for the whole story; this file is
 * the ref parsing, the operation state machines (one kube call in flight per operation), and
 * the diagnosis rules.
 */
#include "controller/target.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "common/log.h"
#include "common/xalloc.h"

#define WAKE_MAX_READS 5
#define DIAG_POD_LIMIT 500

const struct kube_resource target_keda_scaledobjects = {"keda.sh", "v1alpha1", "scaledobjects",
                                                        true};

static const struct {
    const char *kind;        /* as KubeElasti's CRD spells it */
    const char *resource;    /* what KubeElasti's KindToResource makes of any spelling */
    const char *api_version; /* the only apiVersion that serves it */
    struct kube_resource res;
} kinds[] = {
    [TARGET_DEPLOYMENT] = {"Deployment",
                           "deployments",
                           "apps/v1",
                           {"apps", "v1", "deployments", true}},
    [TARGET_STATEFULSET] = {"StatefulSet",
                            "statefulsets",
                            "apps/v1",
                            {"apps", "v1", "statefulsets", true}},
    [TARGET_ROLLOUT] = {"Rollout",
                        "rollouts",
                        "argoproj.io/v1alpha1",
                        {"argoproj.io", "v1alpha1", "rollouts", true}},
};

enum op_type { OP_GET_SCALE, OP_SCALE_TO, OP_WAKE, OP_KEDA_PAUSE, OP_KEDA_RESUME, OP_DIAGNOSE };

struct target_op {
    enum op_type type;
    struct kube_client *client;
    struct target_ref ref;
    char ns[254];
    char object[254];       /* keda: the ScaledObject's name */
    int replicas;           /* scale_to: the count; wake: minReplicas */
    int reads;              /* wake: scale reads so far */
    bool raise;             /* wake: raise a count below `replicas` too, not only a zero */
    struct kube_call *call; /* the one call in flight */
    cJSON *workload;        /* diagnose: the workload as read */
    cJSON *pods;            /* diagnose: its pods (PodList), or NULL */
    target_done_fn done;
    void *arg;
    struct target_result res;
};

/* ---- small JSON and text helpers ---- */

/* A string member, or "" */
static const char *sfield(const cJSON *o, const char *k)
{
    const char *s = json_str(o, k);
    return s ? s : "";
}

static const char *meta(const cJSON *o, const char *k)
{
    return sfield(json_get(o, "metadata"), k);
}

/* Cuts a string that snprintf truncated back to the last whole UTF-8 character, so the text can
 * go into a JSON condition message without producing invalid UTF-8. */
static void utf8_trim(char *s, size_t len)
{
    size_t n = strlen(s);
    if (n + 1 < len || n == 0)
        return;
    size_t i = n - 1;
    while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80)
        i--;
    unsigned char lead = (unsigned char)s[i];
    size_t need = lead < 0x80 ? 1 : (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : 4;
    if (i + need > n)
        s[i] = '\0';
}

__attribute__((format(printf, 3, 4))) static void text(char *dst, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, len, fmt, ap);
    va_end(ap);
    utf8_trim(dst, len);
}

/* Fills reason and "reason: detail" (just reason when detail is empty). */
static void set_reason(struct target_diagnosis *d, const char *reason, const char *detail)
{
    text(d->reason, sizeof(d->reason), "%s", reason);
    if (detail && *detail)
        text(d->message, sizeof(d->message), "%s: %s", reason, detail);
    else
        text(d->message, sizeof(d->message), "%s", reason);
}

/* ---- scaleTargetRef ---- */

const char *target_kind_name(enum target_kind kind)
{
    return kind <= TARGET_ROLLOUT ? kinds[kind].kind : "?";
}

int target_ref_parse_at(const cJSON *ref, const char *path, bool default_api_version,
                        struct target_ref *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(ref)) {
        snprintf(err, errlen, "%s: required, an object", path);
        return -1;
    }
    const cJSON *av = json_get(ref, "apiVersion"), *kv = json_get(ref, "kind"),
                *nv = json_get(ref, "name");
    if (!cJSON_IsString(kv) || !kv->valuestring[0]) {
        snprintf(err, errlen, "%s.kind: required (Deployment, StatefulSet, Rollout)", path);
        return -1;
    }
    /* KubeElasti's KindToResource: lower-case, and plural unless it already ends in 's'. */
    char res[64];
    size_t n = strlen(kv->valuestring);
    if (n == 0 || n + 2 > sizeof(res)) {
        snprintf(err, errlen, "%s.kind: \"%.40s...\" is not a kind holdfast can scale", path,
                 kv->valuestring);
        return -1;
    }
    for (size_t i = 0; i <= n; i++) {
        char ch = kv->valuestring[i];
        res[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
    }
    if (res[n - 1] != 's') {
        res[n] = 's';
        res[n + 1] = '\0';
    }
    int kind = -1;
    for (int i = 0; i <= TARGET_ROLLOUT; i++)
        if (strcmp(res, kinds[i].resource) == 0)
            kind = i;
    if (kind < 0) {
        snprintf(err, errlen,
                 "%s.kind: \"%.64s\" is not a kind holdfast can scale (Deployment, "
                 "StatefulSet, Rollout, or the aliases deployments, rollouts)",
                 path, kv->valuestring);
        return -1;
    }
    bool av_absent = !cJSON_IsString(av) || !av->valuestring[0];
    if (av_absent && !default_api_version) {
        snprintf(err, errlen, "%s.apiVersion: required (%s for %s)", path, kinds[kind].api_version,
                 kinds[kind].kind);
        return -1;
    }
    if (!av_absent && strcmp(av->valuestring, kinds[kind].api_version) != 0) {
        snprintf(err, errlen, "%s.apiVersion: \"%.64s\" does not serve kind %s (%s is %s)", path,
                 av->valuestring, kinds[kind].kind, kinds[kind].kind, kinds[kind].api_version);
        return -1;
    }
    if (!cJSON_IsString(nv) || !nv->valuestring[0]) {
        snprintf(err, errlen, "%s.name: required", path);
        return -1;
    }
    if (strlen(nv->valuestring) >= sizeof(out->name) || strchr(nv->valuestring, '/')) {
        snprintf(err, errlen, "%s.name: \"%.64s\" is not a valid object name", path,
                 nv->valuestring);
        return -1;
    }
    out->kind = (enum target_kind)kind;
    out->res = kinds[kind].res;
    snprintf(out->name, sizeof(out->name), "%s", nv->valuestring);
    return 0;
}

int target_ref_parse(const cJSON *ref, struct target_ref *out, char *err, size_t errlen)
{
    return target_ref_parse_at(ref, "spec.scaleTargetRef", false, out, err, errlen);
}

/* ---- pure parts ---- */

int target_scale_parse(const cJSON *scale, struct target_scale *out)
{
    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(scale))
        return -1;
    out->spec_replicas = json_int(json_get(scale, "spec"), "replicas", 0);
    out->status_replicas = json_int(json_get(scale, "status"), "replicas", 0);
    const char *sel = sfield(json_get(scale, "status"), "selector");
    if (strlen(sel) < sizeof(out->selector))
        snprintf(out->selector, sizeof(out->selector), "%s", sel);
    snprintf(out->resource_version, sizeof(out->resource_version), "%s",
             meta(scale, "resourceVersion"));
    return 0;
}

/* Appends s to buf at *at; -1 when it does not fit. */
static int append(char *buf, size_t len, size_t *at, const char *s)
{
    size_t n = strlen(s);
    if (*at + n + 1 > len)
        return -1;
    memcpy(buf + *at, s, n + 1);
    *at += n;
    return 0;
}

int target_label_selector(const cJSON *selector, char *buf, size_t len)
{
    if (!len)
        return -1;
    buf[0] = '\0';
    if (!cJSON_IsObject(selector))
        return -1;
    size_t at = 0;
    int terms = 0;
    const cJSON *kv;
    cJSON_ArrayForEach(kv, json_get(selector, "matchLabels"))
    {
        if (!cJSON_IsString(kv) || !kv->string)
            return -1;
        if ((terms++ && append(buf, len, &at, ",")) || append(buf, len, &at, kv->string) ||
            append(buf, len, &at, "=") || append(buf, len, &at, kv->valuestring))
            return -1;
    }
    const cJSON *e;
    cJSON_ArrayForEach(e, json_get(selector, "matchExpressions"))
    {
        const char *key = sfield(e, "key"), *op = sfield(e, "operator");
        if (!*key || (terms++ && append(buf, len, &at, ",")))
            return -1;
        if (!strcmp(op, "Exists")) {
            if (append(buf, len, &at, key))
                return -1;
        } else if (!strcmp(op, "DoesNotExist")) {
            if (append(buf, len, &at, "!") || append(buf, len, &at, key))
                return -1;
        } else if (!strcmp(op, "In") || !strcmp(op, "NotIn")) {
            const cJSON *vals = json_get(e, "values");
            if (cJSON_GetArraySize(vals) < 1 || append(buf, len, &at, key) ||
                append(buf, len, &at, !strcmp(op, "In") ? " in (" : " notin ("))
                return -1;
            int i = 0;
            const cJSON *v;
            cJSON_ArrayForEach(v, vals)
            {
                if (!cJSON_IsString(v) || (i++ && append(buf, len, &at, ",")) ||
                    append(buf, len, &at, v->valuestring))
                    return -1;
            }
            if (append(buf, len, &at, ")"))
                return -1;
        } else {
            return -1;
        }
    }
    return terms ? 0 : -1;
}

static const cJSON *condition(const cJSON *obj, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, json_get(json_get(obj, "status"), "conditions"))
    {
        if (!strcmp(sfield(c, "type"), type))
            return c;
    }
    return NULL;
}

static bool condition_is(const cJSON *obj, const char *type, const char *status)
{
    const cJSON *c = condition(obj, type);
    return c && !strcmp(sfield(c, "status"), status);
}

/* Waiting reasons of a container on its normal way to running. */
static bool benign_waiting(const char *reason)
{
    return !*reason || !strcmp(reason, "ContainerCreating") || !strcmp(reason, "PodInitializing");
}

static bool container_problem(const cJSON *statuses, const char *pod, bool init,
                              struct target_diagnosis *out)
{
    const cJSON *cs;
    cJSON_ArrayForEach(cs, statuses)
    {
        const cJSON *waiting = json_get(json_get(cs, "state"), "waiting");
        const char *reason = sfield(waiting, "reason");
        if (!waiting || benign_waiting(reason))
            continue;
        char detail[900], last[128] = "";
        const cJSON *term = json_get(json_get(cs, "lastState"), "terminated");
        if (term && !strcmp(reason, "CrashLoopBackOff"))
            text(last, sizeof(last), ", last exit code %d%s%s", json_int(term, "exitCode", 0),
                 *sfield(term, "reason") ? " " : "", sfield(term, "reason"));
        const char *msg = sfield(waiting, "message");
        text(detail, sizeof(detail), "%s%s(pod %s, %scontainer %s%s)", msg, *msg ? " " : "", pod,
             init ? "init " : "", sfield(cs, "name"), last);
        set_reason(out, reason, detail);
        return true;
    }
    return false;
}

bool target_pod_problem(const cJSON *pod, struct target_diagnosis *out)
{
    if (!cJSON_IsObject(pod) || *meta(pod, "deletionTimestamp"))
        return false;
    const char *name = meta(pod, "name");
    const cJSON *st = json_get(pod, "status");
    char detail[900];
    bool found = false;
    if (!strcmp(sfield(st, "phase"), "Failed")) {
        const char *msg = sfield(st, "message");
        text(detail, sizeof(detail), "%s%s(pod %s)", msg, *msg ? " " : "", name);
        set_reason(out, *sfield(st, "reason") ? sfield(st, "reason") : "PodFailed", detail);
        found = true;
    } else if (condition_is(pod, "PodScheduled", "False") &&
               !strcmp(sfield(condition(pod, "PodScheduled"), "reason"), "Unschedulable")) {
        const char *msg = sfield(condition(pod, "PodScheduled"), "message");
        text(detail, sizeof(detail), "%s%s(pod %s)", msg, *msg ? " " : "", name);
        set_reason(out, "Unschedulable", detail);
        found = true;
    } else {
        found = container_problem(json_get(st, "initContainerStatuses"), name, true, out) ||
                container_problem(json_get(st, "containerStatuses"), name, false, out);
    }
    if (found)
        text(out->object, sizeof(out->object), "Pod/%s", name);
    return found;
}

/* The time an event last happened, RFC 3339 (compares as text). */
static const char *event_time(const cJSON *ev)
{
    const char *t = sfield(ev, "lastTimestamp");
    if (!*t)
        t = sfield(ev, "eventTime");
    return *t ? t : meta(ev, "creationTimestamp");
}

static void count_pods(const cJSON *pods, struct target_diagnosis *out)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, json_get(pods, "items"))
    {
        if (*meta(p, "deletionTimestamp"))
            continue;
        out->pods++;
        if (condition_is(p, "Ready", "True"))
            out->ready_pods++;
    }
}

bool target_diagnose_objects(const cJSON *workload, const cJSON *pods, const cJSON *events,
                             struct target_diagnosis *out)
{
    memset(out, 0, sizeof(*out));
    count_pods(pods, out);
    const char *kind = *sfield(workload, "kind") ? sfield(workload, "kind") : "Workload";
    char self[sizeof(out->object)];
    text(self, sizeof(self), "%s/%s", kind, meta(workload, "name"));

    /* 1. The workload's controller cannot create pods at all. */
    static const char *const hard[] = {"ReplicaFailure", "InvalidSpec"};
    for (size_t i = 0; i < sizeof(hard) / sizeof(hard[0]); i++) {
        const cJSON *c = condition(workload, hard[i]);
        if (c && !strcmp(sfield(c, "status"), "True")) {
            set_reason(out, *sfield(c, "reason") ? sfield(c, "reason") : hard[i],
                       sfield(c, "message"));
            snprintf(out->object, sizeof(out->object), "%s", self);
            return true;
        }
    }

    /* 2. The newest pod with a problem: the one made from the current template. */
    const cJSON *p, *newest = NULL;
    struct target_diagnosis tmp;
    cJSON_ArrayForEach(p, json_get(pods, "items"))
    {
        memset(&tmp, 0, sizeof(tmp));
        if (target_pod_problem(p, &tmp) &&
            (!newest ||
             strcmp(meta(p, "creationTimestamp"), meta(newest, "creationTimestamp")) >= 0))
            newest = p;
    }
    if (newest) {
        int n = out->pods, r = out->ready_pods;
        target_pod_problem(newest, out);
        out->pods = n;
        out->ready_pods = r;
        return true;
    }

    /* 3. Pods are missing and the controller said why only in an event (StatefulSets). */
    const cJSON *spec_replicas = json_get(json_get(workload, "spec"), "replicas");
    int want = cJSON_IsNumber(spec_replicas) ? spec_replicas->valueint : 1;
    int have = pods ? out->pods : json_int(json_get(workload, "status"), "replicas", 0);
    if (have < want) {
        const cJSON *ev, *latest = NULL;
        cJSON_ArrayForEach(ev, json_get(events, "items"))
        {
            if (strcmp(sfield(ev, "type"), "Warning") != 0 ||
                strcmp(sfield(ev, "reason"), "FailedCreate") != 0)
                continue;
            if (!latest || strcmp(event_time(ev), event_time(latest)) >= 0)
                latest = ev;
        }
        if (latest) {
            set_reason(out, "FailedCreate", sfield(latest, "message"));
            snprintf(out->object, sizeof(out->object), "%s", self);
            return true;
        }
    }

    /* 4. The rollout stopped making progress, for reasons not visible above. */
    const cJSON *prog = condition(workload, "Progressing");
    if (prog && !strcmp(sfield(prog, "status"), "False")) {
        set_reason(out,
                   *sfield(prog, "reason") ? sfield(prog, "reason") : "ProgressDeadlineExceeded",
                   sfield(prog, "message"));
        snprintf(out->object, sizeof(out->object), "%s", self);
        return true;
    }
    return false;
}

/* ---- operations ---- */

static struct target_op *op_new(enum op_type type, struct kube_client *c, const char *ns,
                                target_done_fn done, void *arg)
{
    if (!c || !ns || !*ns || strlen(ns) >= sizeof(((struct target_op *)0)->ns) || !done)
        return NULL;
    struct target_op *op = xcalloc(1, sizeof(*op));
    op->type = type;
    op->client = c;
    snprintf(op->ns, sizeof(op->ns), "%s", ns);
    op->done = done;
    op->arg = arg;
    return op;
}

static void op_free(struct target_op *op)
{
    cJSON_Delete(op->workload);
    cJSON_Delete(op->pods);
    free(op);
}

/* Ends the operation: the call in flight (if any) is the one reporting, and kube frees it. */
static void finish(struct target_op *op, const struct kube_error *err)
{
    op->call = NULL;
    op->done(&op->res, err, op->arg);
    op_free(op);
}

/* A follow-up call could not be started (bad arguments or no memory). */
static void finish_unstarted(struct target_op *op, const char *what)
{
    struct kube_error e = {.code = KUBE_ERR_OTHER};
    snprintf(e.reason, sizeof(e.reason), "Start");
    snprintf(e.message, sizeof(e.message), "could not start %s", what);
    finish(op, &e);
}

static void on_scale(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct target_op *op = arg;
    if (!err && target_scale_parse(obj, &op->res.scale) != 0) {
        struct kube_error e = {.code = KUBE_ERR_DECODE, .reason = "Decode"};
        text(e.message, sizeof(e.message), "the Scale of %s %s/%s is not an object",
             target_kind_name(op->ref.kind), op->ns, op->ref.name);
        finish(op, &e);
        return;
    }
    finish(op, err);
}

static bool ref_ok(const struct target_ref *ref)
{
    return ref && ref->name[0] && ref->kind <= TARGET_ROLLOUT;
}

struct target_op *target_get_scale(struct kube_client *c, const struct target_ref *ref,
                                   const char *ns, target_done_fn done, void *arg)
{
    if (!ref_ok(ref))
        return NULL;
    struct target_op *op = op_new(OP_GET_SCALE, c, ns, done, arg);
    if (!op)
        return NULL;
    op->ref = *ref;
    op->call = kube_get(c, &op->ref.res, op->ns, op->ref.name, "scale", on_scale, op);
    if (!op->call) {
        op_free(op);
        return NULL;
    }
    return op;
}

/* Sends op's /scale patch {"spec":{"replicas":op->replicas}}, with metadata.resourceVersion when
 * rv is set (a precondition); op->call is the call, or NULL when it could not be sent. */
static struct kube_call *scale_patch_send(struct target_op *op, const char *rv, kube_done_fn done)
{
    cJSON *p = cJSON_CreateObject();
    if (rv && *rv)
        cJSON_AddStringToObject(cJSON_AddObjectToObject(p, "metadata"), "resourceVersion", rv);
    cJSON_AddNumberToObject(cJSON_AddObjectToObject(p, "spec"), "replicas", op->replicas);
    op->call = kube_patch(op->client, &op->ref.res, op->ns, op->ref.name, "scale", KUBE_PATCH_MERGE,
                          p, done, op);
    cJSON_Delete(p);
    return op->call;
}

struct target_op *target_scale_to(struct kube_client *c, const struct target_ref *ref,
                                  const char *ns, int replicas, target_done_fn done, void *arg)
{
    if (!ref_ok(ref) || replicas < 0)
        return NULL;
    struct target_op *op = op_new(OP_SCALE_TO, c, ns, done, arg);
    if (!op)
        return NULL;
    op->ref = *ref;
    op->replicas = replicas;
    if (!scale_patch_send(op, NULL, on_scale)) {
        op_free(op);
        return NULL;
    }
    return op;
}

static void on_wake_read(cJSON *obj, const struct kube_error *err, void *arg);

static void on_wake_patched(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct target_op *op = arg;
    if (err && err->code == KUBE_ERR_CONFLICT && op->reads < WAKE_MAX_READS) {
        /* Someone changed the workload since we read it: read again and decide again. */
        op->reads++;
        op->call =
            kube_get(op->client, &op->ref.res, op->ns, op->ref.name, "scale", on_wake_read, op);
        if (!op->call)
            finish_unstarted(op, "the scale read after a conflict");
        return;
    }
    if (err) {
        finish(op, err);
        return;
    }
    target_scale_parse(obj, &op->res.scale);
    op->res.patched = true;
    log_info(op->raise ? "raised the target's replicas" : "scaled the target up from zero",
             "namespace=%s kind=%s name=%s from=%d replicas=%d", op->ns,
             target_kind_name(op->ref.kind), op->ref.name, op->res.from, op->replicas);
    finish(op, NULL);
}

static void on_wake_read(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct target_op *op = arg;
    if (err) {
        finish(op, err);
        return;
    }
    target_scale_parse(obj, &op->res.scale);
    int now = op->res.scale.spec_replicas;
    if (op->raise ? now >= op->replicas : now != 0) {
        finish(op, NULL); /* already asked to run (raise: at least as many): nothing to do */
        return;
    }
    op->res.from = now;
    if (!scale_patch_send(op, op->res.scale.resource_version, on_wake_patched))
        finish_unstarted(op, "the scale patch");
}

/* A wake of ref to min_replicas (at least 1), not sent yet; NULL for a bad ref or no memory. */
static struct target_op *wake_op_new(struct kube_client *c, const struct target_ref *ref,
                                     const char *ns, int min_replicas, target_done_fn done,
                                     void *arg)
{
    if (!ref_ok(ref))
        return NULL;
    struct target_op *op = op_new(OP_WAKE, c, ns, done, arg);
    if (!op)
        return NULL;
    op->ref = *ref;
    op->replicas = min_replicas < 1 ? 1 : min_replicas;
    return op;
}

struct target_op *target_wake(struct kube_client *c, const struct target_ref *ref, const char *ns,
                              int min_replicas, target_done_fn done, void *arg)
{
    struct target_op *op = wake_op_new(c, ref, ns, min_replicas, done, arg);
    if (!op)
        return NULL;
    op->reads = 1;
    op->call = kube_get(c, &op->ref.res, op->ns, op->ref.name, "scale", on_wake_read, op);
    if (!op->call) {
        op_free(op);
        return NULL;
    }
    return op;
}

struct target_op *target_wake_at(struct kube_client *c, const struct target_ref *ref,
                                 const char *ns, int min_replicas, const char *resource_version,
                                 target_done_fn done, void *arg)
{
    if (!resource_version || !*resource_version)
        return target_wake(c, ref, ns, min_replicas, done, arg);
    struct target_op *op = wake_op_new(c, ref, ns, min_replicas, done, arg);
    if (!op)
        return NULL;
    op->reads = 0; /* a 409 (the version is stale) reads, then decides as target_wake does */
    if (!scale_patch_send(op, resource_version, on_wake_patched)) {
        op_free(op);
        return NULL;
    }
    return op;
}

struct target_op *target_raise_at(struct kube_client *c, const struct target_ref *ref,
                                  const char *ns, int replicas, int cached_replicas,
                                  const char *resource_version, target_done_fn done, void *arg)
{
    bool at = resource_version && *resource_version && cached_replicas >= 0;
    if (at && cached_replicas >= replicas)
        return NULL; /* the cache shows enough: nothing to send */
    struct target_op *op = wake_op_new(c, ref, ns, replicas, done, arg);
    if (!op)
        return NULL;
    op->raise = true;
    if (at) {
        op->res.from = cached_replicas;
        op->reads = 0;
        op->call = scale_patch_send(op, resource_version, on_wake_patched);
    } else {
        op->reads = 1;
        op->call = kube_get(c, &op->ref.res, op->ns, op->ref.name, "scale", on_wake_read, op);
    }
    if (!op->call) {
        op_free(op);
        return NULL;
    }
    return op;
}

/* ---- KEDA ---- */

static void on_keda(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct target_op *op = arg;
    const char *what = op->type == OP_KEDA_PAUSE ? "pause" : "resume";
    if (err && err->code == KUBE_ERR_NOT_FOUND) {
        log_warn("KEDA ScaledObject not found; nothing to do", "namespace=%s scaledobject=%s do=%s",
                 op->ns, op->object, what);
        op->res.found = false;
        finish(op, NULL);
        return;
    }
    op->res.found = err == NULL;
    const cJSON *max = json_get(json_get(obj, "spec"), "maxReplicaCount");
    if (!err && cJSON_IsNumber(max) && max->valuedouble >= 1 && max->valuedouble <= 1e6)
        op->res.keda_max_replicas = (int)max->valuedouble;
    if (!err)
        log_info(op->type == OP_KEDA_PAUSE ? "paused the KEDA ScaledObject"
                                           : "resumed the KEDA ScaledObject",
                 "namespace=%s scaledobject=%s", op->ns, op->object);
    finish(op, err);
}

static struct target_op *keda_patch(enum op_type type, struct kube_client *c, const char *ns,
                                    const char *name, target_done_fn done, void *arg)
{
    if (!name || !*name || strlen(name) >= sizeof(((struct target_op *)0)->object))
        return NULL;
    struct target_op *op = op_new(type, c, ns, done, arg);
    if (!op)
        return NULL;
    snprintf(op->object, sizeof(op->object), "%s", name);
    cJSON *patch = cJSON_CreateObject();
    cJSON *ann = cJSON_AddObjectToObject(cJSON_AddObjectToObject(patch, "metadata"), "annotations");
    if (type == OP_KEDA_PAUSE) {
        cJSON_AddStringToObject(ann, TARGET_KEDA_PAUSED_REPLICAS, "0");
    } else {
        /* null removes a key in a merge patch (RFC 7386) */
        cJSON_AddNullToObject(ann, TARGET_KEDA_PAUSED_REPLICAS);
        cJSON_AddNullToObject(ann, TARGET_KEDA_PAUSED);
    }
    op->call = ann ? kube_patch(c, &target_keda_scaledobjects, op->ns, op->object, NULL,
                                KUBE_PATCH_MERGE, patch, on_keda, op)
                   : NULL;
    cJSON_Delete(patch);
    if (!op->call) {
        op_free(op);
        return NULL;
    }
    return op;
}

struct target_op *target_keda_pause(struct kube_client *c, const char *ns,
                                    const char *scaled_object, target_done_fn done, void *arg)
{
    return keda_patch(OP_KEDA_PAUSE, c, ns, scaled_object, done, arg);
}

struct target_op *target_keda_resume(struct kube_client *c, const char *ns,
                                     const char *scaled_object, target_done_fn done, void *arg)
{
    return keda_patch(OP_KEDA_RESUME, c, ns, scaled_object, done, arg);
}

/* ---- diagnosis: workload -> pods -> (events) -> rules ---- */

static const struct kube_resource pods_res = {"", "v1", "pods", true};
static const struct kube_resource events_res = {"", "v1", "events", true};

static void diag_decide(struct target_op *op, const cJSON *events)
{
    target_diagnose_objects(op->workload, op->pods, events, &op->res.diag);
    finish(op, NULL);
}

static void on_diag_events(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct target_op *op = arg;
    if (err)
        log_warn("cannot list the target's events; diagnosing without them",
                 "namespace=%s name=%s error=%s message=%s", op->ns, op->ref.name, err->reason,
                 err->message);
    diag_decide(op, err ? NULL : obj);
}

/* Events are read only when pods are missing: only then can they say more than the pods. */
static void diag_events_or_decide(struct target_op *op)
{
    const cJSON *spec_replicas = json_get(json_get(op->workload, "spec"), "replicas");
    int want = cJSON_IsNumber(spec_replicas) ? spec_replicas->valueint : 1;
    struct target_diagnosis counted = {0};
    count_pods(op->pods, &counted);
    int have = op->pods ? counted.pods : json_int(json_get(op->workload, "status"), "replicas", 0);
    const char *uid = meta(op->workload, "uid");
    if (have >= want || !*uid) {
        diag_decide(op, NULL);
        return;
    }
    char fs[200];
    snprintf(fs, sizeof(fs), "involvedObject.uid=%s,type=Warning", uid);
    struct kube_list_opts lo = {.field_selector = fs};
    op->call = kube_list(op->client, &events_res, op->ns, &lo, on_diag_events, op);
    if (!op->call)
        diag_decide(op, NULL);
}

static void on_diag_pods(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct target_op *op = arg;
    if (err) {
        log_warn("cannot list the target's pods; diagnosing from its status",
                 "namespace=%s name=%s error=%s message=%s", op->ns, op->ref.name, err->reason,
                 err->message);
    } else if (obj) {
        op->pods = cJSON_Duplicate(obj, true);
    }
    op->call = NULL;
    diag_events_or_decide(op);
}

static void on_diag_workload(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct target_op *op = arg;
    struct target_diagnosis *d = &op->res.diag;
    if (err && err->code == KUBE_ERR_NOT_FOUND) {
        char detail[600];
        text(detail, sizeof(detail), "%s \"%s\" not found in namespace \"%s\"",
             target_kind_name(op->ref.kind), op->ref.name, op->ns);
        set_reason(d, "TargetNotFound", detail);
        text(d->object, sizeof(d->object), "%s/%s", target_kind_name(op->ref.kind), op->ref.name);
        finish(op, NULL);
        return;
    }
    if (err) {
        finish(op, err);
        return;
    }
    op->workload = cJSON_Duplicate(obj, true);
    if (!op->workload) {
        finish_unstarted(op, "the diagnosis (out of memory)");
        return;
    }
    /* Custom resources carry kind; make sure built-ins name themselves the same way. */
    if (!cJSON_IsString(json_get(op->workload, "kind"))) {
        cJSON_DeleteItemFromObjectCaseSensitive(op->workload, "kind");
        cJSON_AddStringToObject(op->workload, "kind", target_kind_name(op->ref.kind));
    }
    char sel[2048];
    if (target_label_selector(json_get(json_get(op->workload, "spec"), "selector"), sel,
                              sizeof(sel)) != 0) {
        log_warn("the target's spec.selector cannot be used to find its pods",
                 "namespace=%s name=%s", op->ns, op->ref.name);
        op->call = NULL;
        diag_events_or_decide(op);
        return;
    }
    struct kube_list_opts lo = {.label_selector = sel, .limit = DIAG_POD_LIMIT};
    op->call = kube_list(op->client, &pods_res, op->ns, &lo, on_diag_pods, op);
    if (!op->call)
        finish_unstarted(op, "the pod list");
}

struct target_op *target_diagnose(struct kube_client *c, const struct target_ref *ref,
                                  const char *ns, target_done_fn done, void *arg)
{
    if (!ref_ok(ref))
        return NULL;
    struct target_op *op = op_new(OP_DIAGNOSE, c, ns, done, arg);
    if (!op)
        return NULL;
    op->ref = *ref;
    op->call = kube_get(c, &op->ref.res, op->ns, op->ref.name, NULL, on_diag_workload, op);
    if (!op->call) {
        op_free(op);
        return NULL;
    }
    return op;
}
