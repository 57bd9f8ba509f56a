/*
 * target_probe: drives controller/target for the integration tests
 * (tests/integration/test_target.py).
 *
 *   target_probe --kubeconfig FILE --namespace NS [--ref JSON] [--log-level L] OP...
 *
 * --ref is a spec.scaleTargetRef ({"apiVersion":"apps/v1","kind":"Deployment","name":"web"}).
 * OPs, all started at once (so two `wake=1` race each other):
 *   parse            print the parsed ref                 get        target_get_scale
 *   scale=N          target_scale_to N                    wake=N     target_wake, minReplicas N
 *   pause=NAME       target_keda_pause of ScaledObject    resume=NAME target_keda_resume
 *   diagnose         target_diagnose
 * One JSON line per OP as it ends: {"op":"wake=1","ok":true,"patched":true,"spec_replicas":1,
 * "status_replicas":0,"selector":"app=web","found":..,"reason":..,"message":..,"object":..,
 * "pods":..,"ready_pods":..} or {"op":..,"ok":false,"code":"NotFound","http":404,"reason":..,
 * "message":..}. Exit 0 when every OP ran (whatever its outcome), 1 when the ref does not parse,
 * 2 on bad usage. Logs (common/log.h JSON) go to stderr.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "controller/kube/kube.h"
#include "controller/kube/kubeconfig.h"
#include "controller/target.h"

struct job {
    const char *op;
    struct event_base *base;
    int *left;
};

static void emit(cJSON *o)
{
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    cJSON_Delete(o);
}

static void on_done(const struct target_result *r, const struct kube_error *err, void *arg)
{
    struct job *j = arg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "op", j->op);
    cJSON_AddBoolToObject(o, "ok", err == NULL);
    if (err) {
        cJSON_AddStringToObject(o, "code", kube_err_name(err->code));
        cJSON_AddNumberToObject(o, "http", (double)err->http);
        cJSON_AddStringToObject(o, "reason", err->reason);
        cJSON_AddStringToObject(o, "message", err->message);
    } else if (!strncmp(j->op, "pause=", 6) || !strncmp(j->op, "resume=", 7)) {
        cJSON_AddBoolToObject(o, "found", r->found);
    } else if (!strcmp(j->op, "diagnose")) {
        cJSON_AddStringToObject(o, "reason", r->diag.reason);
        cJSON_AddStringToObject(o, "message", r->diag.message);
        cJSON_AddStringToObject(o, "object", r->diag.object);
        cJSON_AddNumberToObject(o, "pods", r->diag.pods);
        cJSON_AddNumberToObject(o, "ready_pods", r->diag.ready_pods);
    } else {
        cJSON_AddBoolToObject(o, "patched", r->patched);
        cJSON_AddNumberToObject(o, "spec_replicas", r->scale.spec_replicas);
        cJSON_AddNumberToObject(o, "status_replicas", r->scale.status_replicas);
        cJSON_AddStringToObject(o, "selector", r->scale.selector);
    }
    emit(o);
    if (--*j->left == 0)
        event_base_loopbreak(j->base);
}

int main(int argc, char **argv)
{
    const char *kubeconfig = NULL, *ns = "default", *refjson = NULL;
    int first_op = argc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            first_op = i;
            break;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--kubeconfig")) {
            kubeconfig = v;
        } else if (!strcmp(a, "--namespace")) {
            ns = v;
        } else if (!strcmp(a, "--ref")) {
            refjson = v;
        } else if (!strcmp(a, "--log-level")) {
            enum log_level l;
            if (log_parse_level(v, &l) == 0)
                log_set_level(l);
        } else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (first_op >= argc) {
        fprintf(stderr,
                "usage: target_probe --kubeconfig FILE --namespace NS [--ref JSON] OP...\n");
        return 2;
    }
    struct target_ref ref = {0};
    bool have_ref = false;
    if (refjson) {
        char err[512];
        cJSON *j = cJSON_Parse(refjson);
        int rc = target_ref_parse(j, &ref, err, sizeof(err));
        cJSON_Delete(j);
        if (rc != 0) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "op", "parse");
            cJSON_AddBoolToObject(o, "ok", false);
            cJSON_AddStringToObject(o, "error", err);
            emit(o);
            return 1;
        }
        have_ref = true;
    }
    /* "parse" alone needs no cluster. */
    if (first_op == argc - 1 && !strcmp(argv[first_op], "parse")) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "op", "parse");
        cJSON_AddBoolToObject(o, "ok", have_ref);
        if (have_ref) {
            cJSON_AddStringToObject(o, "kind", target_kind_name(ref.kind));
            cJSON_AddStringToObject(o, "group", ref.res.group);
            cJSON_AddStringToObject(o, "version", ref.res.version);
            cJSON_AddStringToObject(o, "resource", ref.res.resource);
            cJSON_AddStringToObject(o, "name", ref.name);
        }
        emit(o);
        return have_ref ? 0 : 1;
    }
    if (!kubeconfig) {
        fprintf(stderr, "--kubeconfig is required\n");
        return 2;
    }
    char err[1024];
    struct kubeconfig *kc = NULL;
    if (kubeconfig_load_file(kubeconfig, NULL, &kc, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    struct event_base *base = event_base_new();
    struct kube_client *client = kube_client_new(base, kc, NULL, err, sizeof(err));
    if (!client) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    static const char *const known[] = {"get", "scale=", "wake=", "pause=", "resume=", "diagnose"};
    for (int i = first_op; i < argc; i++) {
        bool ok = false;
        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++) {
            size_t kl = strlen(known[k]);
            ok |= known[k][kl - 1] == '=' ? !strncmp(argv[i], known[k], kl)
                                          : !strcmp(argv[i], known[k]);
        }
        if (!ok || (!have_ref && strncmp(argv[i], "pause=", 6) != 0 &&
                    strncmp(argv[i], "resume=", 7) != 0)) {
            fprintf(stderr, "%s: unknown op, or --ref missing\n", argv[i]);
            kube_client_free(client);
            kubeconfig_free(kc);
            event_base_free(base);
            return 2;
        }
    }
    int n = argc - first_op, left = n;
    struct job *jobs = calloc((size_t)n, sizeof(*jobs));
    for (int i = 0; i < n; i++) {
        const char *op = argv[first_op + i];
        struct job *j = &jobs[i];
        j->op = op;
        j->base = base;
        j->left = &left;
        const char *eq = strchr(op, '=');
        const char *val = eq ? eq + 1 : "";
        struct target_op *t = NULL;
        if (!strcmp(op, "get") && have_ref)
            t = target_get_scale(client, &ref, ns, on_done, j);
        else if (!strncmp(op, "scale=", 6) && have_ref)
            t = target_scale_to(client, &ref, ns, atoi(val), on_done, j);
        else if (!strncmp(op, "wake=", 5) && have_ref)
            t = target_wake(client, &ref, ns, atoi(val), on_done, j);
        else if (!strncmp(op, "pause=", 6))
            t = target_keda_pause(client, ns, val, on_done, j);
        else if (!strncmp(op, "resume=", 7))
            t = target_keda_resume(client, ns, val, on_done, j);
        else if (!strcmp(op, "diagnose") && have_ref)
            t = target_diagnose(client, &ref, ns, on_done, j);
        if (!t) {
            fprintf(stderr, "cannot start %s\n", op); /* checked above: out of memory */
            abort();
        }
    }
    event_base_dispatch(base);
    free(jobs);
    kube_client_free(client);
    kubeconfig_free(kc);
    event_base_free(base);
    return 0;
}
