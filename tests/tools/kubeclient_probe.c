/*
 * kubeclient_probe: drives controller/{kubeconfig,kube,informer} for the integration tests
 * (tests/integration/test_kube_client.py).
 *
 *   kubeclient_probe --kubeconfig FILE | --in-cluster DIR
 *                    --resource [GROUP/]VERSION/RESOURCE [--cluster-scoped]
 *                    [--namespace NS] [--selector LABELS] [--watch] [--watch-timeout S]
 *                    [--page-size N] [--qps Q] [--burst B] [--log-level L]
 *
 * With --watch it runs an informer and prints one JSON line per handler call:
 *   {"event":"add"|"update"|"delete","key":"ns/name","rv":"12","old_rv":"11","data":{...}}
 *   {"event":"synced","count":N}
 * Commands are read from stdin, one per line, each starting with an id echoed in its answer:
 *   ID get NS NAME[/SUB]                ID create NS JSON
 *   ID update NS NAME JSON   (PUT)      ID patch NS NAME merge|json|strategic JSON
 *   ID delete NS NAME                   ID list NS LIMIT   (follows every continue)
 * (get, update and patch take NAME/SUB for a subresource: web/scale, web/status; NS "-" = none)
 *   ID setdata NS NAME KEY VALUE   (kube_update_retry: data[KEY] = VALUE, 5 attempts)
 *   ID cache | ID stop | ID start | ID quit
 * Answers: {"id":ID,"ok":true,...} or {"id":ID,"ok":false,"code":"Conflict","http":409,
 * "reason":"Conflict","message":"..."}. Logs (common/log.h JSON) go to stderr.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "controller/kube/informer.h"
#include "controller/kube/kube.h"
#include "controller/kube/kubeconfig.h"

struct probe {
    struct event_base *base;
    struct kubeconfig *kc;
    struct kube_client *client;
    struct informer *inf;
    struct kube_resource res;
    char inbuf[1 << 16];
    size_t inlen;
};

/* One command in flight: its id, and for list the pages gathered so far. */
struct cmd {
    struct probe *p;
    char id[32];
    char ns[256];
    char key[256];
    char value[1024];
    cJSON *names; /* list */
    int pages;    /* list */
    long limit;   /* list */
};

static void emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

static const char *meta(const cJSON *obj, const char *field)
{
    const cJSON *v =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), field);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static cJSON *event_line(const char *kind, const cJSON *obj)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", kind);
    char key[600];
    const char *ns = meta(obj, "namespace");
    snprintf(key, sizeof(key), "%s%s%s", ns, *ns ? "/" : "", meta(obj, "name"));
    cJSON_AddStringToObject(o, "key", key);
    cJSON_AddStringToObject(o, "rv", meta(obj, "resourceVersion"));
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(obj, "data");
    if (data)
        cJSON_AddItemToObject(o, "data", cJSON_Duplicate(data, true));
    return o;
}

static void on_add(const cJSON *obj, void *arg)
{
    emit(event_line("add", obj));
}

static void on_update(const cJSON *old, const cJSON *obj, void *arg)
{
    cJSON *o = event_line("update", obj);
    cJSON_AddStringToObject(o, "old_rv", meta(old, "resourceVersion"));
    emit(o);
}

static void on_delete(const cJSON *obj, void *arg)
{
    emit(event_line("delete", obj));
}

static void on_synced(void *arg)
{
    struct probe *p = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "event", "synced");
    cJSON_AddNumberToObject(o, "count", (double)informer_count(p->inf));
    emit(o);
}

static cJSON *answer(const struct cmd *c, const struct kube_error *err)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", c->id);
    cJSON_AddBoolToObject(o, "ok", err == NULL);
    if (err) {
        cJSON_AddStringToObject(o, "code", kube_err_name(err->code));
        cJSON_AddNumberToObject(o, "http", (double)err->http);
        cJSON_AddStringToObject(o, "reason", err->reason);
        cJSON_AddStringToObject(o, "message", err->message);
    }
    return o;
}

static void on_done(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct cmd *c = arg;
    cJSON *o = answer(c, err);
    if (obj && !err)
        cJSON_AddItemToObject(o, "object", cJSON_Duplicate(obj, true));
    emit(o);
    free(c);
}

static void on_list_page(cJSON *obj, const struct kube_error *err, void *arg)
{
    struct cmd *c = arg;
    if (err) {
        cJSON_Delete(c->names);
        on_done(NULL, err, c);
        return;
    }
    c->pages++;
    const cJSON *item;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(obj, "items"))
        cJSON_AddItemToArray(c->names, cJSON_CreateString(meta(item, "name")));
    const char *cont = meta(obj, "continue");
    if (*cont) {
        struct kube_list_opts o = {.limit = c->limit, .cont = cont};
        if (kube_list(c->p->client, &c->p->res, c->ns, &o, on_list_page, c))
            return;
        struct kube_error e = {.code = KUBE_ERR_OTHER, .reason = "Start"};
        cJSON_Delete(c->names);
        on_done(NULL, &e, c);
        return;
    }
    cJSON *o = answer(c, NULL);
    cJSON_AddNumberToObject(o, "pages", c->pages);
    cJSON_AddItemToObject(o, "names", c->names);
    cJSON_AddStringToObject(o, "rv", meta(obj, "resourceVersion"));
    emit(o);
    free(c);
}

static int set_data(cJSON *obj, void *arg)
{
    struct cmd *c = arg;
    cJSON *data = cJSON_GetObjectItemCaseSensitive(obj, "data");
    if (!cJSON_IsObject(data)) {
        cJSON_DeleteItemFromObjectCaseSensitive(obj, "data");
        data = cJSON_AddObjectToObject(obj, "data");
    }
    const cJSON *cur = cJSON_GetObjectItemCaseSensitive(data, c->key);
    if (cJSON_IsString(cur) && strcmp(cur->valuestring, c->value) == 0)
        return 1;
    cJSON_DeleteItemFromObjectCaseSensitive(data, c->key);
    cJSON_AddStringToObject(data, c->key, c->value);
    return 0;
}

static void add_rv(const cJSON *obj, void *arg)
{
    char key[600];
    const char *ns = meta(obj, "namespace");
    snprintf(key, sizeof(key), "%s%s%s", ns, *ns ? "/" : "", meta(obj, "name"));
    cJSON_AddStringToObject(arg, key, meta(obj, "resourceVersion"));
}

static void fail_start(struct cmd *c, const char *what)
{
    struct kube_error e = {.code = KUBE_ERR_OTHER};
    snprintf(e.reason, sizeof(e.reason), "BadCommand");
    snprintf(e.message, sizeof(e.message), "%s", what);
    on_done(NULL, &e, c);
}

/* Splits off the next space-separated word; the rest stays in *s. */
static char *word(char **s)
{
    while (**s == ' ')
        (*s)++;
    if (!**s)
        return NULL;
    char *w = *s;
    char *sp = strchr(w, ' ');
    if (sp) {
        *sp = '\0';
        *s = sp + 1;
    } else {
        *s += strlen(w);
    }
    return w;
}

static void run_command(struct probe *p, char *line)
{
    char *id = word(&line), *verb = word(&line);
    if (!id || !verb)
        return;
    struct cmd *c = calloc(1, sizeof(*c));
    c->p = p;
    snprintf(c->id, sizeof(c->id), "%s", id);
    struct kube_call *call = NULL;
    cJSON *body = NULL;
    if (!strcmp(verb, "quit")) {
        emit(answer(c, NULL));
        free(c);
        event_base_loopbreak(p->base);
        return;
    }
    if (!strcmp(verb, "cache") || !strcmp(verb, "stop") || !strcmp(verb, "start")) {
        if (!p->inf) {
            fail_start(c, "no informer (--watch)");
            return;
        }
        if (!strcmp(verb, "stop"))
            informer_stop(p->inf);
        else if (!strcmp(verb, "start"))
            informer_start(p->inf);
        cJSON *o = answer(c, NULL);
        if (!strcmp(verb, "cache")) {
            cJSON_AddBoolToObject(o, "synced", informer_synced(p->inf));
            cJSON_AddNumberToObject(o, "count", (double)informer_count(p->inf));
            cJSON_AddStringToObject(o, "rv", informer_resource_version(p->inf));
            informer_foreach(p->inf, add_rv, cJSON_AddObjectToObject(o, "objects"));
            struct informer_stats st;
            informer_get_stats(p->inf, &st);
            cJSON_AddNumberToObject(o, "lists", (double)st.lists);
            cJSON_AddNumberToObject(o, "watches", (double)st.watches);
            cJSON_AddNumberToObject(o, "failures", (double)st.failures);
        }
        emit(o);
        free(c);
        return;
    }
    char *ns = word(&line);
    if (!ns) {
        fail_start(c, "missing namespace");
        return;
    }
    snprintf(c->ns, sizeof(c->ns), "%s", strcmp(ns, "-") ? ns : "");
    const char *nsarg = c->ns[0] ? c->ns : NULL;
    if (!strcmp(verb, "list")) {
        char *lim = word(&line);
        c->limit = lim ? atol(lim) : 0;
        c->names = cJSON_CreateArray();
        struct kube_list_opts o = {.limit = c->limit};
        call = kube_list(p->client, &p->res, nsarg, &o, on_list_page, c);
        if (!call)
            cJSON_Delete(c->names);
    } else if (!strcmp(verb, "create")) {
        body = cJSON_Parse(line);
        call = body ? kube_create(p->client, &p->res, nsarg, body, on_done, c) : NULL;
    } else {
        char *name = word(&line);
        if (!name) {
            fail_start(c, "missing name");
            return;
        }
        /* "NAME/SUB" addresses a subresource (status, scale). */
        char *sub = strchr(name, '/');
        if (sub)
            *sub++ = '\0';
        if (!strcmp(verb, "get")) {
            call = kube_get(p->client, &p->res, nsarg, name, sub, on_done, c);
        } else if (!strcmp(verb, "delete")) {
            call = kube_delete(p->client, &p->res, nsarg, name, NULL, on_done, c);
        } else if (!strcmp(verb, "update")) {
            body = cJSON_Parse(line);
            call =
                body ? kube_update(p->client, &p->res, nsarg, name, sub, body, on_done, c) : NULL;
        } else if (!strcmp(verb, "patch")) {
            char *kind = word(&line);
            enum kube_patch_type t = KUBE_PATCH_MERGE;
            if (kind && !strcmp(kind, "json"))
                t = KUBE_PATCH_JSON;
            else if (kind && !strcmp(kind, "strategic"))
                t = KUBE_PATCH_STRATEGIC;
            body = cJSON_Parse(line);
            call =
                body ? kube_patch(p->client, &p->res, nsarg, name, sub, t, body, on_done, c) : NULL;
        } else if (!strcmp(verb, "setdata")) {
            char *k = word(&line), *v = word(&line);
            if (k && v) {
                snprintf(c->key, sizeof(c->key), "%s", k);
                snprintf(c->value, sizeof(c->value), "%s", v);
                call = kube_update_retry(p->client, &p->res, nsarg, name, NULL, 5, set_data,
                                         on_done, c);
            }
        }
    }
    cJSON_Delete(body);
    if (!call)
        fail_start(c, "bad command or arguments");
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
    struct probe *p = arg;
    ssize_t n = read(0, p->inbuf + p->inlen, sizeof(p->inbuf) - 1 - p->inlen);
    if (n <= 0) {
        event_base_loopbreak(p->base);
        return;
    }
    p->inlen += (size_t)n;
    p->inbuf[p->inlen] = '\0';
    char *start = p->inbuf, *nl;
    while ((nl = strchr(start, '\n'))) {
        *nl = '\0';
        run_command(p, start);
        start = nl + 1;
    }
    p->inlen -= (size_t)(start - p->inbuf);
    memmove(p->inbuf, start, p->inlen);
}

/* "apps/v1/deployments" or "v1/configmaps" */
static int parse_resource(char *spec, struct kube_resource *r)
{
    char *a = strtok(spec, "/"), *b = strtok(NULL, "/"), *c = strtok(NULL, "/");
    if (!a || !b)
        return -1;
    if (c) {
        r->group = a;
        r->version = b;
        r->resource = c;
    } else {
        r->group = "";
        r->version = a;
        r->resource = b;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct probe p = {0};
    const char *kubeconfig = NULL, *incluster = NULL, *ns = NULL, *selector = NULL;
    bool watch = false;
    long watch_timeout = 0, page_size = 0;
    struct kube_client_opts copts = {0};
    char resbuf[256] = "v1/configmaps";
    p.res.namespaced = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--watch")) {
            watch = true;
        } else if (!strcmp(a, "--cluster-scoped")) {
            p.res.namespaced = false;
        } else if (!v) {
            fprintf(stderr, "%s needs a value\n", a);
            return 2;
        } else {
            i++;
            if (!strcmp(a, "--kubeconfig"))
                kubeconfig = v;
            else if (!strcmp(a, "--in-cluster"))
                incluster = v;
            else if (!strcmp(a, "--resource"))
                snprintf(resbuf, sizeof(resbuf), "%s", v);
            else if (!strcmp(a, "--namespace"))
                ns = v;
            else if (!strcmp(a, "--selector"))
                selector = v;
            else if (!strcmp(a, "--watch-timeout"))
                watch_timeout = atol(v);
            else if (!strcmp(a, "--page-size"))
                page_size = atol(v);
            else if (!strcmp(a, "--qps"))
                copts.qps = atof(v);
            else if (!strcmp(a, "--burst"))
                copts.burst = atoi(v);
            else if (!strcmp(a, "--log-level")) {
                enum log_level l;
                if (log_parse_level(v, &l) == 0)
                    log_set_level(l);
            } else {
                fprintf(stderr, "unknown option %s\n", a);
                return 2;
            }
        }
    }
    if (parse_resource(resbuf, &p.res) != 0) {
        fprintf(stderr, "bad --resource %s\n", resbuf);
        return 2;
    }
    char err[1024];
    int rc = kubeconfig ? kubeconfig_load_file(kubeconfig, NULL, &p.kc, err, sizeof(err))
                        : kubeconfig_load_incluster(incluster, &p.kc, err, sizeof(err));
    if (rc != 0) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "event", "config_error");
        cJSON_AddStringToObject(o, "message", err);
        emit(o);
        return 1;
    }
    p.base = event_base_new();
    p.client = kube_client_new(p.base, p.kc, &copts, err, sizeof(err));
    if (!p.client) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (watch) {
        struct informer_opts io = {.res = p.res,
                                   .ns = ns,
                                   .label_selector = selector,
                                   .watch_timeout_s = watch_timeout,
                                   .page_size = page_size};
        struct informer_handlers h = {on_add, on_update, on_delete, on_synced};
        p.inf = informer_new(p.client, &io, &h, &p);
        if (!p.inf || informer_start(p.inf) != 0) {
            fprintf(stderr, "cannot start the informer\n");
            return 1;
        }
    }
    struct event *in = event_new(p.base, 0, EV_READ | EV_PERSIST, on_stdin, &p);
    event_add(in, NULL);
    cJSON *ready = cJSON_CreateObject();
    cJSON_AddStringToObject(ready, "event", "ready");
    emit(ready);
    event_base_dispatch(p.base);
    event_free(in);
    informer_free(p.inf);
    kube_client_free(p.client);
    kubeconfig_free(p.kc);
    event_base_free(p.base);
    return 0;
}
