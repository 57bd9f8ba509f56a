/*
 * leader_probe: one leader-election candidate (controller/leader) for the integration tests
 * (tests/integration/test_leader_events.py).
 *
 *   leader_probe --kubeconfig FILE --identity ID [--namespace NS] [--name LEASE]
 *                [--lease-ms N] [--renew-ms N] [--retry-ms N] [--disabled] [--log-level L]
 *
 * Prints one JSON line per callback, stamped with CLOCK_MONOTONIC seconds (the clock Python's
 * time.monotonic() reads), so a test can compare leadership intervals across processes:
 *   {"event":"ready","t":..}  {"event":"started_leading","t":..}
 *   {"event":"stopped_leading","t":..}  {"event":"new_leader","identity":"b","t":..}
 * SIGTERM or SIGINT releases the Lease (leader_release), prints
 *   {"event":"released","ok":true|false,"t":..}
 * and exits 0. Logs (common/log.h JSON) go to stderr.
 */
#include <event2/event.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "controller/kube/kube.h"
#include "controller/kube/kubeconfig.h"
#include "controller/kube/leader.h"

struct probe {
    struct event_base *base;
    struct leader *leader;
    bool releasing;
};

static void emit(const char *event, const char *key, const char *value, int ok)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    printf("{\"event\":\"%s\",\"t\":%.6f", event, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
    if (key)
        printf(",\"%s\":\"%s\"", key, value);
    if (ok >= 0)
        printf(",\"ok\":%s", ok ? "true" : "false");
    printf("}\n");
    fflush(stdout);
}

static void started(void *arg)
{
    emit("started_leading", NULL, NULL, -1);
}

static void stopped(void *arg)
{
    emit("stopped_leading", NULL, NULL, -1);
}

static void new_leader(const char *identity, void *arg)
{
    emit("new_leader", "identity", identity, -1);
}

static void released(bool ok, void *arg)
{
    struct probe *p = arg;
    emit("released", NULL, NULL, ok);
    event_base_loopbreak(p->base);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct probe *p = arg;
    if (p->releasing)
        return;
    p->releasing = true;
    leader_release(p->leader, released, p);
}

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL;
    struct leader_opts o = {.ns = "default", .name = "holdfast-leader"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--disabled")) {
            o.disabled = true;
            continue;
        }
        if (!v) {
            fprintf(stderr, "%s needs a value\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--kubeconfig")) {
            kubeconfig = v;
        } else if (!strcmp(a, "--identity")) {
            o.identity = v;
        } else if (!strcmp(a, "--namespace")) {
            o.ns = v;
        } else if (!strcmp(a, "--name")) {
            o.name = v;
        } else if (!strcmp(a, "--lease-ms")) {
            o.lease_duration_ms = atol(v);
        } else if (!strcmp(a, "--renew-ms")) {
            o.renew_deadline_ms = atol(v);
        } else if (!strcmp(a, "--retry-ms")) {
            o.retry_period_ms = atol(v);
        } else if (!strcmp(a, "--log-level")) {
            enum log_level l;
            if (log_parse_level(v, &l) == 0)
                log_set_level(l);
        } else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (!kubeconfig) {
        fprintf(stderr, "--kubeconfig is required\n");
        return 2;
    }
    char err[1024];
    struct kubeconfig *kc;
    if (kubeconfig_load_file(kubeconfig, NULL, &kc, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct probe p = {0};
    p.base = event_base_new();
    struct kube_client_opts copts = {.timeout_ms = 5000, .connect_timeout_ms = 2000};
    struct kube_client *client = kube_client_new(p.base, kc, &copts, err, sizeof(err));
    if (!client) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct leader_callbacks cb = {started, stopped, new_leader, &p};
    p.leader = leader_new(client, &o, &cb, err, sizeof(err));
    if (!p.leader) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct event *term = evsignal_new(p.base, SIGTERM, on_signal, &p);
    struct event *intr = evsignal_new(p.base, SIGINT, on_signal, &p);
    event_add(term, NULL);
    event_add(intr, NULL);
    leader_start(p.leader);
    emit("ready", NULL, NULL, -1);
    event_base_dispatch(p.base);
    event_free(term);
    event_free(intr);
    leader_free(p.leader);
    kube_client_free(client);
    kubeconfig_free(kc);
    event_base_free(p.base);
    return 0;
}
