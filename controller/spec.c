/*
 * spec: ElastiService spec JSON -> struct es_spec. See spec.h.
 */
#include "controller/spec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "resolver/dataplane.h"

static char *dup_str(const cJSON *o, const char *k)
{
    const cJSON *v = json_get(o, k);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

void spec_clear(struct es_spec *s)
{
    free(s->service);
    for (size_t i = 0; i < s->n_triggers; i++)
        prom_trigger_clear(&s->triggers[i]);
    free(s->triggers);
    free(s->schedule);
    free(s->duration);
    free(s->keda);
    free(s->wake_with);
    route_probes_unref(s->probes);
    waiting_page_spec_clear(&s->waiting_page);
    memset(s, 0, sizeof(*s));
}

/* An optional integer field: 0 when absent, -1 (message in err) when not 1..max. */
static int opt_count(const cJSON *spec, const char *field, int max, char *err, size_t errlen)
{
    const cJSON *v = json_get(spec, field);
    if (!v)
        return 0;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= 1 && v->valuedouble <= max) ||
        v->valuedouble != (double)(long long)v->valuedouble) {
        snprintf(err, errlen, "spec.%s: must be an integer from 1 to %d", field, max);
        return -1;
    }
    return (int)v->valuedouble;
}

static bool same_ref(const struct target_ref *a, const struct target_ref *b)
{
    return a->kind == b->kind && strcmp(a->name, b->name) == 0;
}

/* spec.podCapacity, spec.maxWakeReplicas and spec.wakeWith into out (target parsed). */
static int parse_wake(const cJSON *spec, struct es_spec *out, char *err, size_t errlen)
{
    out->pod_capacity = opt_count(spec, "podCapacity", SPEC_MAX_POD_CAPACITY, err, errlen);
    if (out->pod_capacity < 0)
        return -1;
    out->max_wake_replicas =
        opt_count(spec, "maxWakeReplicas", SPEC_MAX_WAKE_REPLICAS, err, errlen);
    if (out->max_wake_replicas < 0)
        return -1;
    if (out->max_wake_replicas && out->max_wake_replicas < out->min_replicas) {
        snprintf(err, errlen,
                 "spec.maxWakeReplicas: %d is below spec.minTargetReplicas (%d): a wake always "
                 "asks for at least minTargetReplicas",
                 out->max_wake_replicas, out->min_replicas);
        return -1;
    }
    const cJSON *ww = json_get(spec, "wakeWith");
    if (!ww)
        return 0;
    if (!cJSON_IsArray(ww) || cJSON_GetArraySize(ww) > SPEC_MAX_WAKE_WITH) {
        snprintf(err, errlen, "spec.wakeWith: must be a list of at most %d workloads",
                 SPEC_MAX_WAKE_WITH);
        return -1;
    }
    size_t n = (size_t)cJSON_GetArraySize(ww);
    out->wake_with = calloc(n ? n : 1, sizeof(*out->wake_with));
    if (!out->wake_with) {
        snprintf(err, errlen, "spec.wakeWith: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        char path[48];
        snprintf(path, sizeof(path), "spec.wakeWith[%zu]", i);
        struct target_ref *m = &out->wake_with[i];
        if (target_ref_parse_at(cJSON_GetArrayItem(ww, (int)i), path, true, m, err, errlen) < 0)
            return -1;
        if (same_ref(m, &out->target)) {
            snprintf(err, errlen, "%s: %s %s is the scale target itself", path,
                     target_kind_name(m->kind), m->name);
            return -1;
        }
        for (size_t j = 0; j < i; j++) {
            if (same_ref(m, &out->wake_with[j])) {
                snprintf(err, errlen, "%s: %s %s is listed twice (also spec.wakeWith[%zu])", path,
                         target_kind_name(m->kind), m->name, j);
                return -1;
            }
        }
        out->n_wake_with++;
    }
    return 0;
}

/* spec.earlyReadiness: {enabled}, on when absent. */
static int parse_early(const cJSON *early, struct es_spec *out, char *err, size_t errlen)
{
    out->early_readiness = true;
    if (!early)
        return 0;
    if (!cJSON_IsObject(early)) {
        snprintf(err, errlen,
                 "spec.earlyReadiness: must be an object ({enabled: false} turns "
                 "early readiness off)");
        return -1;
    }
    const cJSON *on = json_get(early, "enabled");
    if (on && !cJSON_IsBool(on)) {
        snprintf(err, errlen, "spec.earlyReadiness.enabled: must be true or false");
        return -1;
    }
    out->early_readiness = !on || cJSON_IsTrue(on);
    return 0;
}

int spec_parse(const cJSON *spec, const char *prom_address, const char *prom_authorization,
               struct es_spec *out, char *err, size_t errlen)
{
    spec_clear(out);
    out->early_readiness = true;
    const cJSON *min = json_get(spec, "minTargetReplicas");
    out->min_replicas = cJSON_IsNumber(min) && min->valueint > 0 ? min->valueint : 1;
    const cJSON *cd = json_get(spec, "cooldownPeriod");
    out->cooldown_s =
        cJSON_IsNumber(cd) && cd->valueint >= 0 ? (unsigned)cd->valueint : SPEC_DEFAULT_COOLDOWN_S;
    const cJSON *ht = json_get(spec, "holdTimeoutSeconds");
    out->hold_timeout_s = cJSON_IsNumber(ht) && ht->valueint > 0 ? (unsigned)ht->valueint
                                                                 : SPEC_DEFAULT_HOLD_TIMEOUT_S;
    const cJSON *mh = json_get(spec, "maxHeldConnections");
    out->max_held =
        cJSON_IsNumber(mh) && mh->valueint > 0 ? (size_t)mh->valueint : SPEC_DEFAULT_MAX_HELD;
    /* A string that held a NUL character (the API server keeps "web\u0000x" whole) is refused
     * before any string is read: as a C string it would be "web", another Service than the spec
     * names. */
    if (json_refuse_nul(spec, "spec", err, errlen))
        return -1;
    out->service = dup_str(spec, "service");
    const cJSON *period = json_get(spec, "enabledPeriod");
    if (cJSON_IsObject(period)) {
        out->has_period = true;
        out->schedule = dup_str(period, "schedule");
        out->duration = dup_str(period, "duration");
    }
    const cJSON *as = json_get(spec, "autoscaler");
    const cJSON *as_type = json_get(as, "type");
    if (cJSON_IsString(as_type) && strcmp(as_type->valuestring, "keda") == 0)
        out->keda = dup_str(as, "name");

    if (!out->service) {
        snprintf(err, errlen, "spec.service: required");
        return -1;
    }
    if (target_ref_parse(json_get(spec, "scaleTargetRef"), &out->target, err, errlen) < 0)
        return -1;
    out->target_ok = true;
    const cJSON *triggers = json_get(spec, "triggers");
    size_t n = (size_t)cJSON_GetArraySize(triggers);
    out->triggers = calloc(n ? n : 1, sizeof(*out->triggers));
    for (size_t i = 0; out->triggers && i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "spec.triggers[%zu]", i);
        if (prom_trigger_parse(cJSON_GetArrayItem(triggers, (int)i), path, prom_address,
                               prom_authorization, &out->triggers[out->n_triggers], err,
                               errlen) < 0)
            return -1;
        out->n_triggers++;
    }
    out->probes =
        route_probes_parse(json_get(spec, "probeResponse"), "spec.probeResponse", err, errlen);
    if (!out->probes)
        return -1;
    if (waiting_page_parse(json_get(spec, "waitingPage"), "spec.waitingPage", &out->waiting_page,
                           err, errlen) < 0)
        return -1;
    if (parse_early(json_get(spec, "earlyReadiness"), out, err, errlen) < 0)
        return -1;
    return parse_wake(spec, out, err, errlen);
}
