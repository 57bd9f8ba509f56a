/*
 * coldstart: the phases of a cold start, their arithmetic and their texts. See coldstart.h.
 */
#include "controller/coldstart.h"

#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/json.h"

static const char *const PHASE_NAMES[COLD_N] = {"held",       "scaleSent",    "scaleAnswered",
                                                "podCreated", "podScheduled", "containersStarted",
                                                "earlyReady", "ready",        "firstByte"};
static const char *const PHASE_LABELS[COLD_N] = {
    "held",        "scale_sent",    "scale_answered",
    "pod_created", "pod_scheduled", "containers_started",
    "early_ready", "ready",         "first_byte"};
/* What the time up to each phase mostly is, for the Event; consecutive equal names merge. */
static const char *const PHASE_WORDS[COLD_N] = {"",           "scale",
                                                "scale",      "pod creation",
                                                "scheduling", "image pull and container start",
                                                "readiness",  "readiness",
                                                "first byte"};
/* READY's, when it comes after the first byte (early readiness) */
#define READY_AFTER_WORDS "then the kubelet's Ready"

/* The phases in the order they happened: the kubelet's Ready before the first byte, or after
 * it when a pod passed early readiness first. */
static void phase_order(const struct coldstart *cs, enum cold_phase order[COLD_N])
{
    for (int p = 0; p < COLD_N; p++)
        order[p] = (enum cold_phase)p;
    if (cs->at_ms[COLD_EARLY_READY] >= 0) {
        order[COLD_READY] = COLD_FIRST_BYTE;
        order[COLD_FIRST_BYTE] = COLD_READY;
    }
}

static const char *phase_words(const struct coldstart *cs, enum cold_phase p)
{
    return p == COLD_READY && cs->at_ms[COLD_EARLY_READY] >= 0 ? READY_AFTER_WORDS : PHASE_WORDS[p];
}

void coldstart_init(struct coldstart *cs)
{
    for (int p = 0; p < COLD_N; p++)
        cs->at_ms[p] = -1;
}

const char *coldstart_phase_name(enum cold_phase p)
{
    return p < COLD_N ? PHASE_NAMES[p] : "";
}

const char *coldstart_phase_label(enum cold_phase p)
{
    return p < COLD_N ? PHASE_LABELS[p] : "";
}

int64_t coldstart_mono_to_wall_ms(uint64_t mono_ns, uint64_t mono_now_ns, uint64_t wall_now_ns)
{
    int64_t ago_ns = (int64_t)(mono_now_ns - mono_ns);
    return ((int64_t)wall_now_ns - ago_ns) / 1000000;
}

/* A pod time (RFC 3339, seconds) as wall ms, or -1. */
static int64_t pod_time_ms(const char *s)
{
    int64_t t;
    return s && clock_rfc3339_parse(s, &t) == 0 ? t * 1000 : -1;
}

/* The lastTransitionTime (ms) of the condition `type` when it is True, or -1. */
static int64_t true_since_ms(const cJSON *conditions, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, conditions)
    {
        const char *t = json_str(c, "type"), *st = json_str(c, "status");
        if (t && strcmp(t, type) == 0)
            return st && strcmp(st, "True") == 0 ? pod_time_ms(json_str(c, "lastTransitionTime"))
                                                 : -1;
    }
    return -1;
}

/* The latest state.running.startedAt of the containers (ms), or -1 when any is not running. */
static int64_t containers_started_ms(const cJSON *statuses)
{
    int64_t latest = -1;
    const cJSON *c;
    cJSON_ArrayForEach(c, statuses)
    {
        int64_t t = pod_time_ms(json_str(json_get(json_get(c, "state"), "running"), "startedAt"));
        if (t < 0)
            return -1;
        if (t > latest)
            latest = t;
    }
    return latest;
}

int coldstart_read_pod(struct coldstart *cs, const cJSON *pod)
{
    const cJSON *st = json_get(pod, "status");
    const cJSON *conds = json_get(st, "conditions");
    cs->at_ms[COLD_POD_CREATED] =
        pod_time_ms(json_str(json_get(pod, "metadata"), "creationTimestamp"));
    cs->at_ms[COLD_POD_SCHEDULED] = true_since_ms(conds, "PodScheduled");
    cs->at_ms[COLD_CONTAINERS_STARTED] = containers_started_ms(json_get(st, "containerStatuses"));
    cs->at_ms[COLD_READY] = true_since_ms(conds, "Ready");
    static const enum cold_phase read[] = {COLD_POD_CREATED, COLD_POD_SCHEDULED,
                                           COLD_CONTAINERS_STARTED, COLD_READY};
    int found = 0;
    for (size_t i = 0; i < sizeof(read) / sizeof(read[0]); i++)
        found += cs->at_ms[read[i]] >= 0;
    return found;
}

int64_t coldstart_start_ms(const struct coldstart *cs)
{
    for (int p = 0; p < COLD_N; p++)
        if (cs->at_ms[p] >= 0)
            return cs->at_ms[p];
    return -1;
}

int64_t coldstart_phases_ms(const struct coldstart *cs, int64_t ms[COLD_N])
{
    enum cold_phase order[COLD_N];
    phase_order(cs, order);
    int64_t start = coldstart_start_ms(cs), last = 0;
    for (int i = 0; i < COLD_N; i++) {
        enum cold_phase p = order[i];
        ms[p] = -1;
        if (start < 0 || cs->at_ms[p] < 0)
            continue;
        int64_t v = cs->at_ms[p] - start;
        ms[p] = v < last ? last : v;
        last = ms[p];
    }
    if (start >= 0 && ms[COLD_FIRST_BYTE] >= 0)
        return ms[COLD_FIRST_BYTE]; /* what the held client waited */
    return start < 0 ? -1 : last;
}

void coldstart_durations(const struct coldstart *cs, int64_t durations_ms[COLD_N])
{
    int64_t ms[COLD_N];
    coldstart_phases_ms(cs, ms);
    enum cold_phase order[COLD_N];
    phase_order(cs, order);
    int64_t prev = -1;
    for (int i = 0; i < COLD_N; i++) {
        enum cold_phase p = order[i];
        durations_ms[p] = -1;
        if (ms[p] < 0)
            continue;
        if (prev >= 0)
            durations_ms[p] = ms[p] - prev;
        prev = ms[p];
    }
}

cJSON *coldstart_status(const struct coldstart *cs)
{
    int64_t ms[COLD_N];
    int64_t total = coldstart_phases_ms(cs, ms);
    int64_t start = coldstart_start_ms(cs);
    if (start < 0)
        return NULL;
    char at[CLOCK_RFC3339_MAX];
    if (clock_rfc3339_format(at, sizeof(at), start / 1000, (long)(start % 1000) * 1000000, 3) != 0)
        return NULL;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "startedAt", at);
    cJSON_AddNumberToObject(o, "totalMs", (double)total);
    cJSON *phases = cJSON_AddObjectToObject(o, "phases");
    enum cold_phase order[COLD_N];
    phase_order(cs, order);
    for (int i = 1; i < COLD_N; i++)
        if (ms[order[i]] >= 0)
            cJSON_AddNumberToObject(phases, PHASE_NAMES[order[i]], (double)ms[order[i]]);
    return o;
}

void coldstart_breakdown(const struct coldstart *cs, char *buf, size_t len)
{
    int64_t d[COLD_N];
    int64_t ms[COLD_N];
    int64_t total = coldstart_phases_ms(cs, ms);
    coldstart_durations(cs, d);
    if (!len)
        return;
    enum cold_phase order[COLD_N];
    phase_order(cs, order);
    int n = snprintf(buf, len, "cold start %.1f s", total < 0 ? 0.0 : (double)total / 1000.0);
    const char *sep = ": ";
    for (int i = 1; i < COLD_N && n >= 0 && (size_t)n < len; i++) {
        enum cold_phase p = order[i];
        if (d[p] < 0)
            continue;
        int64_t sum = d[p];
        while (i + 1 < COLD_N && d[order[i + 1]] >= 0 &&
               strcmp(phase_words(cs, order[i + 1]), phase_words(cs, p)) == 0)
            sum += d[order[++i]];
        n += snprintf(buf + n, len - (size_t)n, "%s%s %.1f s", sep, phase_words(cs, p),
                      (double)sum / 1000.0);
        sep = ", ";
    }
}
