/*
 * fake_cluster: synthetic ElastiServices over fake_http. See fake_cluster.h.
 */
#include "tests/fuzz/fake_cluster.h"

#include <errno.h>
#include <event2/event.h>
#include <limits.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/metrics.h"
#include "controller/controller.h"
#include "tests/fuzz/fake_http.h"
#include "resolver/conn.h"
#include "resolver/worker.h"

#define NS "bench"
#define FAKE_API_MAX 16

struct fake_cluster {
    struct event_base *base;
    struct dataplane *dp;
    struct controller *c;
    unsigned port_base;
    char *bind; /* the controller keeps a pointer to it */
    struct http_request *svc_watch, *slice_watch, *es_watch;
    unsigned rv;  /* the next resourceVersion */
    bool leading; /* fake_cluster_start_leading: ElastiServices in serve mode, no ports yet */
    /* fake_cluster_start_api: the objects the fake API server keeps (see fake_cluster_serve) */
    bool api;
    int count;
    struct http_request *deploy_watch, *sts_watch;
    cJSON *es[FAKE_API_MAX];    /* ElastiService i as stored, or NULL */
    int replicas[FAKE_API_MAX]; /* Deployment i's spec.replicas */
    unsigned deploy_rv[FAKE_API_MAX];
    cJSON *slices; /* resolver EndpointSlices written by holdfast (an array) */
};

/* ---- growing text ---- */

struct text {
    char *p;
    size_t len, cap;
};

static void text_add(struct text *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct text *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            abort();
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t ncap = b->cap ? b->cap * 2 : 65536;
        while (ncap < b->len + (size_t)n + 1)
            ncap *= 2;
        b->p = realloc(b->p, ncap);
        if (!b->p)
            abort();
        b->cap = ncap;
    }
}

/* ---- synthetic objects ---- */

/* Set by fake_cluster_full_objects: the objects carry what an API server sends besides. */
static bool full_objects;

void fake_cluster_full_objects(bool on)
{
    full_objects = on;
}

/* managedFields as the API server keeps them (one entry per field manager), abridged. */
static void managed_fields(struct text *b, const char *manager, const char *fields)
{
    text_add(b,
             "\"managedFields\":[{\"manager\":\"%s\",\"operation\":\"Update\",\"apiVersion\":"
             "\"v1\",\"time\":\"2026-01-01T00:00:00Z\",\"fieldsType\":\"FieldsV1\","
             "\"fieldsV1\":%s}],",
             manager, fields);
}

static void es_json_gen(struct text *b, int i, unsigned port_base, bool serve, long generation,
                        unsigned cooldown_s)
{
    text_add(b, "{\"apiVersion\":\"elasti.truefoundry.com/v1alpha1\",\"kind\":\"ElastiService\","
                "\"metadata\":{");
    if (full_objects) {
        managed_fields(b, "kubectl-client-side-apply",
                       "{\"f:metadata\":{\"f:annotations\":{\".\":{},\"f:kubectl.kubernetes.io/"
                       "last-applied-configuration\":{}},\"f:labels\":{\".\":{},\"f:app\":{}}},"
                       "\"f:spec\":{\".\":{},\"f:cooldownPeriod\":{},\"f:minTargetReplicas\":{},"
                       "\"f:scaleTargetRef\":{\".\":{},\"f:apiVersion\":{},\"f:kind\":{},"
                       "\"f:name\":{}},\"f:service\":{}}}");
        text_add(b,
                 "\"labels\":{\"app\":\"svc-%d\"},\"annotations\":{\"kubectl.kubernetes.io/"
                 "last-applied-configuration\":\"{\\\"apiVersion\\\":\\\"elasti.truefoundry.com/"
                 "v1alpha1\\\",\\\"kind\\\":\\\"ElastiService\\\",\\\"metadata\\\":{"
                 "\\\"annotations\\\":{},\\\"labels\\\":{\\\"app\\\":\\\"svc-%d\\\"},\\\"name\\\":"
                 "\\\"svc-%d\\\",\\\"namespace\\\":\\\"" NS "\\\"},\\\"spec\\\":{"
                 "\\\"cooldownPeriod\\\":300,\\\"minTargetReplicas\\\":1,\\\"scaleTargetRef\\\":{"
                 "\\\"apiVersion\\\":\\\"apps/v1\\\",\\\"kind\\\":\\\"Deployment\\\",\\\"name\\\":"
                 "\\\"svc-%d\\\"},\\\"service\\\":\\\"svc-%d\\\"}}\\n\"},",
                 i, i, i, i, i);
    }
    text_add(b,
             "\"name\":\"svc-%d\",\"namespace\":\"" NS "\",\"uid\":\"es-%d\","
             "\"resourceVersion\":\"1\",\"generation\":%ld,\"creationTimestamp\":"
             "\"2026-01-01T00:00:00Z\",\"finalizers\":[\"elasti.truefoundry.com/finalizer\"]},"
             "\"spec\":{\"service\":\"svc-%d\",\"minTargetReplicas\":1,\"cooldownPeriod\":%u,"
             "\"scaleTargetRef\":{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\","
             "\"name\":\"svc-%d\"}},",
             i, i, generation, i, cooldown_s, i);
    if (serve)
        text_add(b, "\"status\":{\"mode\":\"serve\",\"observedGeneration\":1}}");
    else
        text_add(b,
                 "\"status\":{\"mode\":\"proxy\",\"observedGeneration\":1,\"ports\":[{\"name\":"
                 "\"http\",\"port\":80,\"protocol\":\"TCP\",\"resolverPort\":%u}]}}",
                 port_base + (unsigned)i);
}

static void es_json(struct text *b, int i, unsigned port_base, bool serve)
{
    es_json_gen(b, i, port_base, serve, 1, 300);
}

static void svc_json(struct text *b, int i, const char *port_name, unsigned rv)
{
    text_add(b, "{\"apiVersion\":\"v1\",\"kind\":\"Service\",\"metadata\":{");
    if (full_objects) {
        managed_fields(b, "kubectl-client-side-apply",
                       "{\"f:metadata\":{\"f:labels\":{\".\":{},\"f:app\":{}}},\"f:spec\":{"
                       "\"f:internalTrafficPolicy\":{},\"f:ports\":{\".\":{},"
                       "\"k:{\\\"port\\\":80,\\\"protocol\\\":\\\"TCP\\\"}\":{\".\":{},"
                       "\"f:name\":{},\"f:port\":{},\"f:protocol\":{},\"f:targetPort\":{}}},"
                       "\"f:selector\":{},\"f:sessionAffinity\":{},\"f:type\":{}}}");
        text_add(b,
                 "\"labels\":{\"app\":\"svc-%d\"},\"creationTimestamp\":"
                 "\"2026-01-01T00:00:00Z\",",
                 i);
    }
    text_add(b,
             "\"name\":\"svc-%d\",\"namespace\":\"" NS "\",\"uid\":\"svc-%d\",\"resourceVersion\":"
             "\"%u\"},\"spec\":{",
             i, i, rv);
    if (full_objects)
        text_add(b,
                 "\"selector\":{\"app\":\"svc-%d\"},\"clusterIPs\":[\"10.96.%d.%d\"],"
                 "\"sessionAffinity\":\"None\",\"ipFamilies\":[\"IPv4\"],\"ipFamilyPolicy\":"
                 "\"SingleStack\",\"internalTrafficPolicy\":\"Cluster\",",
                 i, (i / 250) % 250, i % 250 + 1);
    text_add(b,
             "\"type\":\"ClusterIP\",\"clusterIP\":\"10.96.%d.%d\",\"ports\":[{"
             "\"name\":\"%s\",\"port\":80,\"protocol\":\"TCP\",\"targetPort\":8080}]}",
             (i / 250) % 250, i % 250 + 1, port_name);
    text_add(b, full_objects ? ",\"status\":{\"loadBalancer\":{}}}" : "}");
}

static void slice_json(struct text *b, int i, bool ready, unsigned rv)
{
    text_add(b, "{\"apiVersion\":\"discovery.k8s.io/v1\",\"kind\":\"EndpointSlice\","
                "\"metadata\":{");
    if (full_objects) {
        managed_fields(b, "kube-controller-manager",
                       "{\"f:addressType\":{},\"f:endpoints\":{},\"f:metadata\":{\"f:"
                       "generateName\":{},\"f:labels\":{\".\":{},\"f:endpointslice.kubernetes.io/"
                       "managed-by\":{},\"f:kubernetes.io/service-name\":{}},\"f:ownerReferences\":"
                       "{\".\":{},\"k:{\\\"uid\\\":\\\"svc\\\"}\":{}}},\"f:ports\":{}}");
        text_add(b,
                 "\"generateName\":\"svc-%d-\",\"generation\":1,\"creationTimestamp\":"
                 "\"2026-01-01T00:00:00Z\",\"annotations\":{\"endpoints.kubernetes.io/"
                 "last-change-trigger-time\":\"2026-01-01T00:00:00Z\"},\"ownerReferences\":[{"
                 "\"apiVersion\":\"v1\",\"kind\":\"Service\",\"name\":\"svc-%d\",\"uid\":"
                 "\"svc-%d\",\"controller\":true,\"blockOwnerDeletion\":true}],",
                 i, i, i);
    }
    text_add(b,
             "\"name\":\"svc-%d-abcde\",\"namespace\":\"" NS "\","
             "\"uid\":\"slice-%d\",\"resourceVersion\":\"%u\",\"labels\":{",
             i, i, rv);
    if (full_objects)
        text_add(b, "\"app\":\"svc-%d\",", i);
    text_add(b,
             "\"kubernetes.io/service-name\":\"svc-%d\",\"endpointslice.kubernetes.io/"
             "managed-by\":\"endpointslice-controller.k8s.io\"}},\"addressType\":\"IPv4\","
             "\"ports\":[{\"name\":\"http\",\"port\":8080,\"protocol\":\"TCP\"}],"
             "\"endpoints\":[",
             i);
    if (ready) {
        text_add(b,
                 "{\"addresses\":[\"10.244.%d.%d\"],\"conditions\":{\"ready\":true,"
                 "\"serving\":true,\"terminating\":false}",
                 (i / 250) % 250, i % 250 + 1);
        if (full_objects)
            text_add(b,
                     ",\"nodeName\":\"node-1\",\"zone\":\"zone-a\",\"targetRef\":{\"kind\":"
                     "\"Pod\",\"namespace\":\"" NS "\",\"name\":\"svc-%d-5d9c7b6f4-x2x7q\","
                     "\"uid\":\"pod-%d\"}",
                     i, i);
        text_add(b, "}");
    }
    text_add(b, "]}");
}

enum kind { ES, SVC, SLICE, DEPLOY, STS };

/* fake_cluster_start_api's Deployments: spec.replicas of each, for the list (process wide, set
 * by the start). */
static int api_replicas;

static void deploy_json(struct text *b, int i, int replicas, unsigned rv)
{
    text_add(b,
             "{\"apiVersion\":\"apps/v1\",\"kind\":\"Deployment\",\"metadata\":{\"name\":"
             "\"svc-%d\",\"namespace\":\"" NS "\",\"uid\":\"dep-%d\",\"resourceVersion\":"
             "\"%u\",\"generation\":%u},\"spec\":{\"replicas\":%d},\"status\":{"
             "\"observedGeneration\":%u,\"readyReplicas\":%d}}",
             i, i, rv, rv, replicas, rv, replicas);
}

/* Items [from, to) of a list of n, with the continue token of the next page when to < n. */
static char *list_json(enum kind kind, int from, int to, int n, unsigned port_base, bool serve,
                       size_t *len)
{
    static const char *const kinds[] = {"ElastiServiceList", "ServiceList", "EndpointSliceList",
                                        "DeploymentList", "StatefulSetList"};
    struct text b = {0};
    text_add(&b, "{\"kind\":\"%s\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"1\"",
             kinds[kind]);
    if (to < n)
        text_add(&b, ",\"continue\":\"page-%d\"", to);
    text_add(&b, "},\"items\":[");
    for (int i = from; i < to; i++) {
        if (i > from)
            text_add(&b, ",");
        if (kind == ES)
            es_json(&b, i, port_base, serve);
        else if (kind == SVC)
            svc_json(&b, i, "http", 1);
        else if (kind == DEPLOY)
            deploy_json(&b, i, api_replicas, 1);
        else
            slice_json(&b, i, false, 1);
    }
    text_add(&b, "]}");
    *len = b.len;
    return b.p;
}

char *fake_cluster_object_json(const char *resource, int i)
{
    struct text b = {0};
    if (strcmp(resource, "elastiservices") == 0)
        es_json(&b, i, 40000, false);
    else if (strcmp(resource, "services") == 0)
        svc_json(&b, i, "http", 1);
    else if (strcmp(resource, "endpointslices") == 0)
        slice_json(&b, i, true, 1);
    return b.p;
}

/* ---- driving the loop ---- */

void fake_cluster_settle(struct fake_cluster *fc)
{
    for (int i = 0; i < 64; i++) {
        event_base_loop(fc->base, EVLOOP_NONBLOCK);
        if (event_base_get_num_events(fc->base, EVENT_BASE_COUNT_ACTIVE) == 0)
            break;
    }
}

/* The pending request whose "METHOD URL" contains both needles, or NULL. */
static struct http_request *pending(const char *a, const char *b)
{
    struct http_request *r = fake_http_pick(a, strlen(a));
    if (!r)
        return NULL;
    const char *what = fake_http_what(r);
    return strstr(what, a) && strstr(what, b) ? r : NULL;
}

/*
 * Answers the list of `resource` (count objects of `kind`) in the pages its requests ask for
 * (limit=, continue=), as an API server does, so the informer holds one page's decoded objects
 * at a time, not the whole list; returns the watch that follows, or NULL.
 */
static struct http_request *answer_list(struct fake_cluster *fc, const char *resource,
                                        enum kind kind, int count)
{
    int from = 0;
    do {
        struct http_request *r = NULL;
        for (int i = 0; i < 1000 && !(r = pending(resource, "limit=")); i++)
            fake_cluster_settle(fc);
        if (!r)
            return NULL;
        const char *what = fake_http_what(r);
        const char *lim = strstr(what, "limit=");
        int limit = lim ? atoi(lim + strlen("limit=")) : 0;
        int to = limit > 0 && count - from > limit ? from + limit : count;
        size_t len;
        char *body = list_json(kind, from, to, count, fc->port_base, fc->leading && !fc->api, &len);
        fake_http_answer(r, 200, body, len, false, false);
        free(body);
        fake_cluster_settle(fc);
        from = to;
    } while (from < count);
    struct http_request *w = NULL;
    for (int i = 0; i < 1000 && !(w = pending(resource, "watch=true")); i++)
        fake_cluster_settle(fc);
    return w;
}

unsigned long long fake_cluster_generation(struct dataplane *dp)
{
    pthread_mutex_lock(&dp->routes.mu);
    unsigned long long g = dp->routes.generation;
    pthread_mutex_unlock(&dp->routes.mu);
    return g;
}

bool fake_cluster_applied(struct dataplane *dp, unsigned long long gen)
{
    for (int i = 0; i < dp->nworkers; i++) {
        if (atomic_load(&dp->workers[i]->applied_generation) < gen)
            return false;
    }
    return true;
}

static struct fake_cluster *start(struct event_base *base, struct dataplane *dp, int count,
                                  const char *bind, unsigned port_base, bool leading,
                                  const struct fake_cluster_api_opts *api, char *err, size_t errlen)
{
    char dir[] = "/tmp/holdfast-fake-cluster.XXXXXX";
    if (!mkdtemp(dir)) {
        snprintf(err, errlen, "cannot make a temporary directory: %s", strerror(errno));
        return NULL;
    }
    char kubeconfig[PATH_MAX];
    snprintf(kubeconfig, sizeof(kubeconfig), "%s/kubeconfig", dir);
    FILE *f = fopen(kubeconfig, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", kubeconfig, strerror(errno));
        rmdir(dir);
        return NULL;
    }
    fputs("clusters:\n- name: c\n  cluster: {server: 'https://kube.invalid:6443'}\n"
          "contexts:\n- name: x\n  context: {cluster: c, user: u, namespace: default}\n"
          "current-context: x\nusers:\n- name: u\n  user: {token: fake}\n",
          f);
    fclose(f);
    struct fake_cluster *fc = calloc(1, sizeof(*fc));
    if (!fc)
        abort();
    fc->base = base;
    fc->dp = dp;
    fc->port_base = port_base;
    fc->rv = 2;
    fc->leading = leading;
    fc->api = api != NULL;
    fc->count = count;
    fc->bind = strdup(bind);
    if (!fc->bind)
        abort();
    struct controller_opts opts = {
        .kubeconfig = kubeconfig,
        .pod_name = "holdfast-fake",
        .pod_ip = "10.0.0.7",
        .bind_address = fc->bind,
        .port_min = port_base,
        .port_max = port_base + (unsigned)count,
        .polling_interval_ms = api && api->polling_interval_ms ? api->polling_interval_ms : 3600000,
        .api_qps = 1e9,
        .api_burst = 1000000,
        /* following: the Lease is never answered, so this replica only routes */
        .leader_elect = !leading,
        .no_target_watch = !api,
    };
    fc->c = controller_start(base, dp, &opts, err, errlen);
    unlink(kubeconfig);
    rmdir(dir);
    if (!fc->c) {
        free(fc->bind);
        free(fc);
        return NULL;
    }
    fake_cluster_settle(fc);
    fc->svc_watch = answer_list(fc, "/services?", SVC, count);
    fc->slice_watch = answer_list(fc, "/endpointslices?", SLICE, count);
    fc->es_watch = answer_list(fc, "/elastiservices?", ES, api && !api->es_listed ? 0 : count);
    if (api) {
        api_replicas = api->replicas;
        fc->deploy_watch = answer_list(fc, "/deployments?", DEPLOY, count);
        fc->sts_watch = answer_list(fc, "/statefulsets?", STS, 0);
        for (int i = 0; i < count && i < FAKE_API_MAX; i++) {
            fc->replicas[i] = api->replicas;
            fc->deploy_rv[i] = 1;
            if (api->es_listed) {
                struct text b = {0};
                es_json(&b, i, port_base, false);
                fc->es[i] = cJSON_Parse(b.p);
                free(b.p);
            }
        }
        fc->slices = cJSON_CreateArray();
    }
    if (!fc->svc_watch || !fc->slice_watch || !fc->es_watch ||
        (api && (!fc->deploy_watch || !fc->sts_watch))) {
        snprintf(err, errlen, "the informers did not list and watch as expected");
        fake_cluster_free(fc);
        return NULL;
    }
    for (int i = 0; i < 100000 && !(controller_ready(fc->c) && dataplane_ready(dp)); i++) {
        fake_cluster_settle(fc);
        nanosleep(&(struct timespec){0, 10000}, NULL);
    }
    if (!controller_ready(fc->c) || !dataplane_ready(dp)) {
        snprintf(err, errlen, "the routes of the synthetic objects were never applied");
        fake_cluster_free(fc);
        return NULL;
    }
    return fc;
}

struct fake_cluster *fake_cluster_start(struct event_base *base, struct dataplane *dp, int count,
                                        const char *bind, unsigned port_base, char *err,
                                        size_t errlen)
{
    return start(base, dp, count, bind, port_base, false, NULL, err, errlen);
}

struct fake_cluster *fake_cluster_start_api(struct event_base *base, struct dataplane *dp,
                                            const struct fake_cluster_api_opts *o, const char *bind,
                                            unsigned port_base, char *err, size_t errlen)
{
    if (o->count < 1 || o->count > FAKE_API_MAX) {
        snprintf(err, errlen, "fake_cluster_start_api: count %d is not 1 to %d", o->count,
                 FAKE_API_MAX);
        return NULL;
    }
    return start(base, dp, o->count, bind, port_base, true, o, err, errlen);
}

struct fake_cluster *fake_cluster_start_leading(struct event_base *base, struct dataplane *dp,
                                                int count, const char *bind, unsigned port_base,
                                                char *err, size_t errlen)
{
    return start(base, dp, count, bind, port_base, true, NULL, err, errlen);
}

struct controller *fake_cluster_controller(const struct fake_cluster *fc)
{
    return fc->c;
}

static void send_event(struct http_request *watch, const char *type, struct text *obj)
{
    struct text ev = {0};
    text_add(&ev, "{\"type\":\"%s\",\"object\":%s}\n", type, obj->p);
    fake_http_answer(watch, 200, ev.p, ev.len, true, false);
    free(ev.p);
    free(obj->p);
}

void fake_cluster_set_ready(struct fake_cluster *fc, int i, bool ready)
{
    struct text obj = {0};
    slice_json(&obj, i, ready, fc->rv++);
    send_event(fc->slice_watch, "MODIFIED", &obj);
}

void fake_cluster_set_port_name(struct fake_cluster *fc, int i, const char *port_name)
{
    struct text obj = {0};
    svc_json(&obj, i, port_name, fc->rv++);
    send_event(fc->svc_watch, "MODIFIED", &obj);
}

void fake_cluster_delete_es(struct fake_cluster *fc, int i)
{
    struct text obj = {0};
    es_json(&obj, i, fc->port_base, fc->leading);
    send_event(fc->es_watch, "DELETED", &obj);
}

void fake_cluster_modify_es(struct fake_cluster *fc, int i, long generation, unsigned cooldown_s)
{
    struct text obj = {0};
    es_json_gen(&obj, i, fc->port_base, fc->leading, generation, cooldown_s);
    /* a new resourceVersion, as every write gets */
    char *rv = strstr(obj.p, "\"resourceVersion\":\"1\"");
    if (rv) {
        char tail[64];
        snprintf(tail, sizeof(tail), "\"resourceVersion\":\"%u\"", fc->rv++);
        struct text b = {0};
        text_add(&b, "%.*s%s%s", (int)(rv - obj.p), obj.p, tail,
                 rv + strlen("\"resourceVersion\":\"1\""));
        free(obj.p);
        obj = b;
    }
    send_event(fc->es_watch, "MODIFIED", &obj);
}

double fake_cluster_metric(const struct fake_cluster *fc, const char *name)
{
    struct mtext out;
    mtext_init(&out);
    controller_metrics(&out, fc->c);
    char key[256];
    snprintf(key, sizeof(key), "\n%s ", name);
    const char *at = out.data ? strstr(out.data, key) : NULL;
    double v = at ? strtod(at + strlen(key), NULL) : -1;
    mtext_free(&out);
    return v;
}

double fake_cluster_services_built(const struct fake_cluster *fc)
{
    return fake_cluster_metric(fc, "holdfast_route_services_built_total");
}

void fake_cluster_free(struct fake_cluster *fc)
{
    struct http_request *r;
    for (int i = 0; i < 100000 && (r = fake_http_pick_plain()); i++) {
        fake_http_answer(r, 0, "", 0, false, false);
        fake_cluster_settle(fc);
    }
    controller_free(fc->c);
    for (int i = 0; i < FAKE_API_MAX; i++)
        cJSON_Delete(fc->es[i]);
    cJSON_Delete(fc->slices);
    free(fc->bind);
    free(fc);
}

/* ---- the fake API server (fake_cluster_start_api) ---- */

/* RFC 7386 merge patch of target by patch (both cJSON objects); target changed in place. */
static void merge_patch(cJSON *target, const cJSON *patch)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, patch)
    {
        if (cJSON_IsNull(p)) {
            cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
        } else if (cJSON_IsObject(p)) {
            cJSON *t = cJSON_GetObjectItemCaseSensitive(target, p->string);
            if (!cJSON_IsObject(t)) {
                cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
                t = cJSON_AddObjectToObject(target, p->string);
            }
            merge_patch(t, p);
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(target, p->string);
            cJSON_AddItemToObject(target, p->string, cJSON_Duplicate(p, 1));
        }
    }
}

static void set_rv(cJSON *obj, unsigned rv)
{
    cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    if (!cJSON_IsObject(md))
        md = cJSON_AddObjectToObject(obj, "metadata");
    char text[32];
    snprintf(text, sizeof(text), "%u", rv);
    cJSON_DeleteItemFromObjectCaseSensitive(md, "resourceVersion");
    cJSON_AddStringToObject(md, "resourceVersion", text);
}

static void answer_json(struct http_request *r, long status, const cJSON *obj)
{
    char *body = cJSON_PrintUnformatted(obj);
    if (!body)
        abort();
    fake_http_answer(r, status, body, strlen(body), false, false);
    free(body);
}

static void answer_status(struct http_request *r, long code, const char *reason)
{
    char body[256];
    snprintf(body, sizeof(body),
             "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"reason\":"
             "\"%s\",\"code\":%ld,\"message\":\"%s (fake)\"}",
             reason, code, reason);
    fake_http_answer(r, code, body, strlen(body), false, false);
}

static void send_json_event(struct http_request *watch, const char *type, const cJSON *obj)
{
    if (!watch)
        return;
    char *text = cJSON_PrintUnformatted(obj);
    struct text b = {0};
    text_add(&b, "%s", text);
    free(text);
    send_event(watch, type, &b);
}

/* The index i of "svc-<i>" right after `prefix` in url, or -1. */
static int index_after(const char *url, const char *prefix)
{
    const char *at = strstr(url, prefix);
    if (!at)
        return -1;
    char *end;
    long i = strtol(at + strlen(prefix), &end, 10);
    return end != at + strlen(prefix) && i >= 0 && i < FAKE_API_MAX ? (int)i : -1;
}

static void deploy_event(struct fake_cluster *fc, int i)
{
    struct text b = {0};
    fc->deploy_rv[i] = fc->rv++;
    deploy_json(&b, i, fc->replicas[i], fc->deploy_rv[i]);
    send_event(fc->deploy_watch, "MODIFIED", &b);
}

static void answer_scale(struct fake_cluster *fc, struct http_request *r, int i, bool patch)
{
    if (patch) {
        cJSON *body = cJSON_Parse(fake_http_body(r));
        const cJSON *md = cJSON_GetObjectItemCaseSensitive(body, "metadata");
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
        const cJSON *n =
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(body, "spec"), "replicas");
        char have[32];
        snprintf(have, sizeof(have), "%u", fc->deploy_rv[i]);
        if (cJSON_IsString(rv) && strcmp(rv->valuestring, have) != 0) {
            cJSON_Delete(body);
            answer_status(r, 409, "Conflict");
            return;
        }
        if (cJSON_IsNumber(n) && n->valueint != fc->replicas[i]) {
            fc->replicas[i] = n->valueint;
            deploy_event(fc, i);
        }
        cJSON_Delete(body);
    }
    struct text b = {0};
    text_add(&b,
             "{\"kind\":\"Scale\",\"apiVersion\":\"autoscaling/v1\",\"metadata\":{\"name\":"
             "\"svc-%d\",\"namespace\":\"" NS "\",\"resourceVersion\":\"%u\"},\"spec\":{",
             i, fc->deploy_rv[i]);
    if (fc->replicas[i]) /* Scale omits a zero */
        text_add(&b, "\"replicas\":%d", fc->replicas[i]);
    text_add(&b, "},\"status\":{\"replicas\":%d,\"selector\":\"app=svc-%d\"}}", fc->replicas[i], i);
    fake_http_answer(r, 200, b.p, b.len, false, false);
    free(b.p);
}

static cJSON *slice_find(struct fake_cluster *fc, const char *name, int *at)
{
    int k = 0;
    cJSON *s;
    cJSON_ArrayForEach(s, fc->slices)
    {
        const cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(s, "metadata"), "name");
        if (cJSON_IsString(n) && strcmp(n->valuestring, name) == 0) {
            if (at)
                *at = k;
            return s;
        }
        k++;
    }
    return NULL;
}

/* Answers r as an API server holding fc's objects would, and sends the write's watch event. */
static void api_answer(struct fake_cluster *fc, struct http_request *r)
{
    const char *what = fake_http_what(r);
    bool get = strncmp(what, "GET ", 4) == 0, patch = strncmp(what, "PATCH ", 6) == 0;
    bool post = strncmp(what, "POST ", 5) == 0, put = strncmp(what, "PUT ", 4) == 0;
    bool del = strncmp(what, "DELETE ", 7) == 0;
    int i;
    if ((i = index_after(what, "/elastiservices/svc-")) >= 0 && patch && fc->es[i]) {
        cJSON *body = cJSON_Parse(fake_http_body(r));
        if (strstr(what, "/status"))
            merge_patch(fc->es[i], cJSON_GetObjectItem(body, "status") ? body : NULL);
        else
            merge_patch(fc->es[i], cJSON_GetObjectItem(body, "metadata") ? body : NULL);
        cJSON_Delete(body);
        set_rv(fc->es[i], fc->rv++);
        answer_json(r, 200, fc->es[i]);
        send_json_event(fc->es_watch, "MODIFIED", fc->es[i]);
    } else if ((i = index_after(what, "/deployments/svc-")) >= 0 && strstr(what, "/scale") &&
               (get || patch)) {
        answer_scale(fc, r, i, patch);
    } else if (strstr(what, "/endpointslices") && post) {
        cJSON *obj = cJSON_Parse(fake_http_body(r));
        const cJSON *n = cJSON_GetObjectItem(cJSON_GetObjectItem(obj, "metadata"), "name");
        if (!cJSON_IsString(n) || slice_find(fc, n->valuestring, NULL)) {
            cJSON_Delete(obj);
            answer_status(r, 409, "AlreadyExists");
            return;
        }
        set_rv(obj, fc->rv++);
        cJSON_AddItemToArray(fc->slices, obj);
        answer_json(r, 201, obj);
        send_json_event(fc->slice_watch, "ADDED", obj);
    } else if (strstr(what, "/endpointslices/") && (get || put || del)) {
        const char *name = strstr(what, "/endpointslices/") + strlen("/endpointslices/");
        int at = -1;
        cJSON *have = slice_find(fc, name, &at);
        if (!have) {
            answer_status(r, 404, "NotFound");
        } else if (get) {
            answer_json(r, 200, have);
        } else if (put) {
            cJSON *obj = cJSON_Parse(fake_http_body(r));
            set_rv(obj, fc->rv++);
            cJSON_ReplaceItemInArray(fc->slices, at, obj);
            answer_json(r, 200, obj);
            send_json_event(fc->slice_watch, "MODIFIED", obj);
        } else {
            cJSON *gone = cJSON_DetachItemFromArray(fc->slices, at);
            static const char ok[] = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"
                                     "\"Success\"}";
            fake_http_answer(r, 200, ok, strlen(ok), false, false);
            send_json_event(fc->slice_watch, "DELETED", gone);
            cJSON_Delete(gone);
        }
    } else if (strstr(what, "/events") && (post || patch)) {
        cJSON *obj = cJSON_Parse(fake_http_body(r));
        set_rv(obj, fc->rv++);
        answer_json(r, post ? 201 : 200, obj);
        cJSON_Delete(obj);
    } else {
        answer_status(r, 404, "NotFound");
    }
}

int fake_cluster_serve(struct fake_cluster *fc)
{
    int n = 0;
    for (int k = 0; k < 100000; k++) {
        fake_cluster_settle(fc);
        struct http_request *r = fake_http_pick_plain();
        if (!r)
            break;
        api_answer(fc, r);
        n++;
    }
    return n;
}

void fake_cluster_create_es(struct fake_cluster *fc, int i)
{
    if (i < 0 || i >= FAKE_API_MAX)
        return;
    struct text b = {0};
    text_add(&b,
             "{\"apiVersion\":\"elasti.truefoundry.com/v1alpha1\",\"kind\":\"ElastiService\","
             "\"metadata\":{\"name\":\"svc-%d\",\"namespace\":\"" NS "\",\"uid\":\"es-%d\","
             "\"resourceVersion\":\"%u\",\"generation\":1,\"creationTimestamp\":"
             "\"2026-01-01T00:00:00Z\"},\"spec\":{\"service\":\"svc-%d\",\"minTargetReplicas\":1,"
             "\"cooldownPeriod\":300,\"scaleTargetRef\":{\"apiVersion\":\"apps/v1\",\"kind\":"
             "\"Deployment\",\"name\":\"svc-%d\"}}}",
             i, i, fc->rv++, i, i);
    cJSON_Delete(fc->es[i]);
    fc->es[i] = cJSON_Parse(b.p);
    send_event(fc->es_watch, "ADDED", &b);
}

const cJSON *fake_cluster_api_es(const struct fake_cluster *fc, int i)
{
    return i >= 0 && i < FAKE_API_MAX ? fc->es[i] : NULL;
}

int fake_cluster_api_slices(const struct fake_cluster *fc)
{
    return cJSON_GetArraySize(fc->slices);
}

int fake_cluster_api_replicas(const struct fake_cluster *fc, int i)
{
    return i >= 0 && i < FAKE_API_MAX ? fc->replicas[i] : -1;
}

void fake_cluster_api_set_replicas(struct fake_cluster *fc, int i, int replicas, bool event)
{
    if (i < 0 || i >= FAKE_API_MAX)
        return;
    fc->replicas[i] = replicas;
    if (event)
        deploy_event(fc, i);
    else
        fc->deploy_rv[i] = fc->rv++;
}
