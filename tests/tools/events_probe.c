/*
 * events_probe: drives controller/events for the integration tests
 * (tests/integration/test_leader_events.py).
 *
 *   events_probe --kubeconfig FILE [--instance POD] [--window-s S] [--cache-size N]
 *                [--log-level L]
 *
 * Commands on stdin, one per line, each starting with an id echoed in its answer:
 *   ID record {"object":{"apiVersion":..,"kind":..,"namespace":..,"name":..,"uid":..},
 *              "type":"Normal"|"Warning","reason":"..","message":".."}
 *   ID flush MS        (answers when no write is in flight: "drained")
 *   ID stats           ID quit
 * Answers: {"id":ID,"ok":true|false,...}; stats carry events_stats' fields. Logs go to stderr.
 */
#include <cjson/cJSON.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "controller/kube/events.h"
#include "controller/kube/kube.h"
#include "controller/kube/kubeconfig.h"

struct probe {
    struct event_base *base;
    struct events *ev;
    char inbuf[1 << 16];
    size_t inlen;
    char flush_id[32];
};

static void emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

static cJSON *answer(const char *id, bool ok)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", id);
    cJSON_AddBoolToObject(o, "ok", ok);
    return o;
}

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void flushed(bool drained, void *arg)
{
    struct probe *p = arg;
    cJSON *o = answer(p->flush_id, true);
    cJSON_AddBoolToObject(o, "drained", drained);
    emit(o);
}

static void run_command(struct probe *p, char *line)
{
    char *id = strtok(line, " ");
    char *verb = strtok(NULL, " ");
    char *rest = strtok(NULL, "");
    if (!id || !verb)
        return;
    if (!strcmp(verb, "quit")) {
        emit(answer(id, true));
        event_base_loopbreak(p->base);
    } else if (!strcmp(verb, "stats")) {
        struct events_stats st;
        events_get_stats(p->ev, &st);
        cJSON *o = answer(id, true);
        cJSON_AddNumberToObject(o, "created", (double)st.created);
        cJSON_AddNumberToObject(o, "patched", (double)st.patched);
        cJSON_AddNumberToObject(o, "recreated", (double)st.recreated);
        cJSON_AddNumberToObject(o, "failed", (double)st.failed);
        cJSON_AddNumberToObject(o, "dropped", (double)st.dropped);
        cJSON_AddNumberToObject(o, "in_flight", (double)st.in_flight);
        cJSON_AddNumberToObject(o, "cached", (double)st.cached);
        emit(o);
    } else if (!strcmp(verb, "flush")) {
        snprintf(p->flush_id, sizeof(p->flush_id), "%s", id);
        events_flush(p->ev, rest ? atol(rest) : 5000, flushed, p);
    } else if (!strcmp(verb, "record") && rest) {
        cJSON *cmd = cJSON_Parse(rest);
        const cJSON *obj = cJSON_GetObjectItemCaseSensitive(cmd, "object");
        struct events_object io = {
            .api_version = str(obj, "apiVersion"),
            .kind = str(obj, "kind"),
            .ns = str(obj, "namespace"),
            .name = str(obj, "name"),
            .uid = str(obj, "uid"),
            .resource_version = str(obj, "resourceVersion"),
        };
        const char *type = str(cmd, "type");
        const char *msg = str(cmd, "message");
        int rc = events_record(p->ev, &io,
                               type && !strcmp(type, "Warning") ? EVENTS_WARNING : EVENTS_NORMAL,
                               str(cmd, "reason"), "%s", msg ? msg : "");
        emit(answer(id, rc == 0));
        cJSON_Delete(cmd);
    } else {
        emit(answer(id, false));
    }
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

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL;
    struct events_opts eo = {.component = "holdfast"}; /* as the controller names itself */
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--kubeconfig")) {
            kubeconfig = v;
        } else if (!strcmp(a, "--instance")) {
            eo.instance = v;
        } else if (!strcmp(a, "--window-s")) {
            eo.window_s = atol(v);
        } else if (!strcmp(a, "--cache-size")) {
            eo.cache_size = (size_t)atol(v);
        } else if (!strcmp(a, "--log-level")) {
            enum log_level l;
            if (log_parse_level(v, &l) == 0)
                log_set_level(l);
        } else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    char err[1024];
    struct kubeconfig *kc;
    if (!kubeconfig || kubeconfig_load_file(kubeconfig, NULL, &kc, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", kubeconfig ? err : "--kubeconfig is required");
        return 1;
    }
    struct probe p = {0};
    p.base = event_base_new();
    struct kube_client *client = kube_client_new(p.base, kc, NULL, err, sizeof(err));
    if (!client) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    p.ev = events_new(client, &eo);
    struct event *in = event_new(p.base, 0, EV_READ | EV_PERSIST, on_stdin, &p);
    event_add(in, NULL);
    cJSON *ready = cJSON_CreateObject();
    cJSON_AddStringToObject(ready, "event", "ready");
    emit(ready);
    event_base_dispatch(p.base);
    event_free(in);
    events_free(p.ev);
    kube_client_free(client);
    kubeconfig_free(kc);
    event_base_free(p.base);
    return 0;
}
