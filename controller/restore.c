/*
 * restore: every selected ElastiService back in serve mode. See restore.h.
 */
#include "controller/restore.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "controller/defaults.h"
#include "controller/kube/kube.h"
#include "controller/kube/kubeconfig.h"
#include "controller/kube/leader.h"
#include "controller/slices.h"
#include "controller/target.h"

static const struct kube_resource RES_ES = {"elasti.truefoundry.com", "v1alpha1", "elastiservices",
                                            true};
static const struct kube_resource RES_SLICE = {"discovery.k8s.io", "v1", "endpointslices", true};

#define FINALIZER "elasti.truefoundry.com/finalizer"
#define RESTORE_IDENTITY "holdfast-restore"
/* How long the Lease is held: past the uninstall's deletion of the Deployment, so no replica
 * leads again meanwhile; a new install waits at most this long for its leader. */
#define RESTORE_LEASE_S 60
/* A replica that led renews within its retry period (2 s, jittered up to 2.2x by candidates):
 * after this long it has seen the new holder and stopped. */
#define RESTORE_SETTLE_MS 5000

struct restore;

/* One ElastiService being restored. */
struct item {
    struct restore *r;
    char ns[254], name[254], service[254], keda[254];
    struct target_ref target;
    int min_replicas;
    cJSON *keep_finalizers; /* uninstall: the finalizers other than ours, or NULL: none of ours */
    bool invalid;           /* the spec cannot be restored (only the finalizer is removed) */
    int pending;            /* writes in flight */
    bool failed;
};

struct restore {
    struct event_base *base;
    struct kube_client *kube;
    const struct restore_opts *o;
    struct event *settle;
    struct item *items;
    size_t n_items;
    int pending; /* items not finished, plus the list itself */
    int failed;
};

static void item_step_done(struct item *it, const char *what, const struct kube_error *err)
{
    if (err && err->code != KUBE_ERR_NOT_FOUND) {
        it->failed = true;
        log_error("restore step failed",
                  "namespace=%s elastiservice=%s step=%s error=%s message=%s", it->ns, it->name,
                  what, err->reason, err->message);
    }
    if (--it->pending > 0)
        return;
    if (it->failed)
        it->r->failed++;
    else
        log_info("restored: serve mode", "namespace=%s elastiservice=%s", it->ns, it->name);
    if (--it->r->pending == 0)
        event_base_loopbreak(it->r->base);
}

static void on_target(const struct target_result *res, const struct kube_error *err, void *arg)
{
    item_step_done(arg, "scale target", err);
}

static void on_kube(cJSON *obj, const struct kube_error *err, void *arg)
{
    item_step_done(arg, "kubernetes write", err);
}

static void on_slices(cJSON *list, const struct kube_error *err, void *arg)
{
    struct item *it = arg;
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(list, "items"))
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(s, "metadata"), "name");
        if (!cJSON_IsString(name))
            continue;
        it->pending++;
        if (!kube_delete(it->r->kube, &RES_SLICE, it->ns, name->valuestring, NULL, on_kube, it))
            item_step_done(it, "delete resolver slice", NULL);
    }
    item_step_done(it, "list resolver slices", err);
}

/* Starts every step of one item; each ends in item_step_done. */
static void item_start(struct item *it)
{
    struct restore *r = it->r;
    it->pending = 1; /* until every step is started */
    if (!it->invalid) {
        it->pending++;
        if (!target_wake(r->kube, &it->target, it->ns, it->min_replicas, on_target, it))
            item_step_done(it, "scale target", NULL);
        if (it->keda[0]) {
            it->pending++;
            if (!target_keda_resume(r->kube, it->ns, it->keda, on_target, it))
                item_step_done(it, "resume KEDA", NULL);
        }
        char sel[600];
        snprintf(sel, sizeof(sel), "%s=%s,%s=%s", LABEL_SERVICE_NAME, it->service, LABEL_MANAGED_BY,
                 SLICES_MANAGED_BY);
        struct kube_list_opts lo = {.label_selector = sel};
        it->pending++;
        if (!kube_list(r->kube, &RES_SLICE, it->ns, &lo, on_slices, it))
            item_step_done(it, "list resolver slices", NULL);
        char now[CLOCK_RFC3339_MAX];
        clock_rfc3339_format(now, sizeof(now), clock_wall_s(), 0, 0);
        cJSON *patch = cJSON_CreateObject();
        cJSON *st = cJSON_AddObjectToObject(patch, "status");
        cJSON_AddStringToObject(st, "mode", "serve");
        cJSON_AddStringToObject(st, "lastScaledUpTime", now);
        it->pending++;
        if (!kube_patch(r->kube, &RES_ES, it->ns, it->name, "status", KUBE_PATCH_MERGE, patch,
                        on_kube, it))
            item_step_done(it, "status", NULL);
        cJSON_Delete(patch);
    }
    if (it->keep_finalizers) {
        cJSON *fp = cJSON_CreateObject();
        cJSON_AddItemToObject(cJSON_AddObjectToObject(fp, "metadata"), "finalizers",
                              it->keep_finalizers);
        it->keep_finalizers = NULL;
        it->pending++;
        if (!kube_patch(r->kube, &RES_ES, it->ns, it->name, NULL, KUBE_PATCH_MERGE, fp, on_kube,
                        it))
            item_step_done(it, "remove finalizer", NULL);
        cJSON_Delete(fp);
    }
    item_step_done(it, "start", NULL);
}

static void on_list(cJSON *list, const struct kube_error *err, void *arg)
{
    struct restore *r = arg;
    r->pending--;
    if (err) {
        log_error("cannot list ElastiServices", "error=%s message=%s", err->reason, err->message);
        r->failed++;
        event_base_loopbreak(r->base);
        return;
    }
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(list, "items");
    r->items = calloc((size_t)cJSON_GetArraySize(items) + 1, sizeof(*r->items));
    if (!r->items) {
        r->failed++;
        event_base_loopbreak(r->base);
        return;
    }
    const cJSON *es;
    cJSON_ArrayForEach(es, items)
    {
        struct item *it = &r->items[r->n_items];
        it->r = r;
        const char *ns = json_str(json_get(es, "metadata"), "namespace");
        const char *name = json_str(json_get(es, "metadata"), "name");
        const char *svc = json_str(json_get(es, "spec"), "service");
        const cJSON *spec = cJSON_GetObjectItemCaseSensitive(es, "spec");
        snprintf(it->ns, sizeof(it->ns), "%s", ns ? ns : "");
        snprintf(it->name, sizeof(it->name), "%s", name ? name : "");
        snprintf(it->service, sizeof(it->service), "%s", svc ? svc : "");
        const cJSON *min = cJSON_GetObjectItemCaseSensitive(spec, "minTargetReplicas");
        it->min_replicas = cJSON_IsNumber(min) && min->valueint > 0 ? min->valueint : 1;
        const cJSON *as = cJSON_GetObjectItemCaseSensitive(spec, "autoscaler");
        const char *as_type = json_str(as, "type");
        const char *as_name = json_str(as, "name");
        if (as_type && strcmp(as_type, "keda") == 0 && as_name)
            snprintf(it->keda, sizeof(it->keda), "%s", as_name);
        const cJSON *fins = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(es, "metadata"), "finalizers");
        bool ours = false;
        cJSON *keep = cJSON_CreateArray();
        const cJSON *f;
        cJSON_ArrayForEach(f, fins)
        {
            if (cJSON_IsString(f) && strcmp(f->valuestring, FINALIZER) == 0)
                ours = true;
            else if (cJSON_IsString(f))
                cJSON_AddItemToArray(keep, cJSON_CreateString(f->valuestring));
        }
        if (r->o->uninstall && ours)
            it->keep_finalizers = keep;
        else
            cJSON_Delete(keep);
        char terr[300];
        /* A spec string with a NUL would name another object than the spec does. */
        bool nul = json_refuse_nul(spec, "spec", terr, sizeof(terr));
        if (nul ||
            target_ref_parse(cJSON_GetObjectItemCaseSensitive(spec, "scaleTargetRef"), &it->target,
                             terr, sizeof(terr)) < 0 ||
            !svc) {
            log_error("cannot restore: invalid spec", "namespace=%s elastiservice=%s error=%s",
                      it->ns, it->name, nul || svc ? terr : "spec.service: required");
            if (!it->keep_finalizers) {
                r->failed++;
                continue;
            }
            /* uninstall: its finalizer still goes; counted failed when that is done */
            it->invalid = true;
            it->failed = true;
        }
        r->n_items++;
    }
    for (size_t i = 0; i < r->n_items; i++) {
        r->pending++;
        item_start(&r->items[i]);
    }
    if (r->pending == 0)
        event_base_loopbreak(r->base);
}

static void list_elastiservices(struct restore *r)
{
    const struct restore_opts *o = r->o;
    /* One object: list with a field selector, so the flow is the same. */
    char sel[300] = "";
    if (o->name)
        snprintf(sel, sizeof(sel), "metadata.name=%s", o->name);
    struct kube_list_opts lo = {.field_selector = o->name ? sel : NULL};
    if (!kube_list(r->kube, &RES_ES, o->namespace_, &lo, on_list, r)) {
        struct kube_error e = {.code = KUBE_ERR_OTHER, .reason = "Internal"};
        snprintf(e.message, sizeof(e.message), "cannot start the list request");
        on_list(NULL, &e, r);
    }
}

static void on_settled(evutil_socket_t fd, short what, void *arg)
{
    list_elastiservices(arg);
}

static void on_lease_taken(const struct kube_error *err, void *arg)
{
    struct restore *r = arg;
    if (err) {
        /* Restoring the services matters more than the finalizers: go on, and say what may
         * happen. */
        log_warn("cannot take the leader Lease: a replica still running may add the finalizer "
                 "back or act on a service meanwhile",
                 "lease_namespace=%s lease=%s error=%s message=%s", r->o->lease_namespace,
                 r->o->lease_name, err->reason, err->message);
        list_elastiservices(r);
        return;
    }
    log_info("leader Lease taken: no replica reconciles while restoring",
             "lease_namespace=%s lease=%s held_s=%d", r->o->lease_namespace, r->o->lease_name,
             RESTORE_LEASE_S);
    struct timeval tv = {RESTORE_SETTLE_MS / 1000, (RESTORE_SETTLE_MS % 1000) * 1000};
    event_add(r->settle, &tv);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct restore *r = arg;
    log_error("restore timed out", "unfinished=%d", r->pending);
    r->failed += r->pending;
    event_base_loopbreak(r->base);
}

int restore_run(const struct restore_opts *o, char *err, size_t errlen)
{
    struct kubeconfig *kc = NULL;
    int rc = o->kubeconfig ? kubeconfig_load_file(o->kubeconfig, NULL, &kc, err, errlen)
                           : kubeconfig_load_incluster(NULL, &kc, err, errlen);
    if (rc < 0)
        return 2;
    if (o->insecure_skip_tls_verify)
        kc->insecure = true;
    struct restore_opts opts = *o;
    if (!opts.lease_name)
        opts.lease_name = CONTROLLER_DEFAULT_LEASE_NAME;
    if (!opts.lease_namespace)
        opts.lease_namespace = "default";
    struct restore r = {.base = event_base_new(), .o = &opts};
    struct kube_client_opts ko = {.user_agent = CONTROLLER_USER_AGENT};
    r.kube = r.base ? kube_client_new(r.base, kc, &ko, err, errlen) : NULL;
    struct event *timeout = r.base ? evtimer_new(r.base, on_timeout, &r) : NULL;
    r.settle = r.base ? evtimer_new(r.base, on_settled, &r) : NULL;
    int result = 2;
    if (r.kube && timeout && r.settle) {
        struct timeval tv = {(time_t)(o->timeout_s ? o->timeout_s : 120), 0};
        event_add(timeout, &tv);
        r.pending = 1;
        if (!opts.uninstall ||
            !leader_take_over(r.kube, opts.lease_namespace, opts.lease_name, RESTORE_IDENTITY,
                              RESTORE_LEASE_S, on_lease_taken, &r))
            list_elastiservices(&r);
        event_base_dispatch(r.base);
        result = r.failed ? 1 : 0;
        if (!result)
            log_info("every ElastiService is in serve mode", "restored=%zu", r.n_items);
    } else if (!err[0]) {
        snprintf(err, errlen, "out of memory");
    }
    if (timeout)
        event_free(timeout);
    if (r.settle)
        event_free(r.settle);
    kube_client_free(r.kube);
    for (size_t i = 0; r.items && i < r.n_items; i++)
        cJSON_Delete(r.items[i].keep_finalizers);
    free(r.items);
    if (r.base)
        event_base_free(r.base);
    kubeconfig_free(kc);
    return result;
}
