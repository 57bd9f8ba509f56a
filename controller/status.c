/*
 * status: the rules of an ElastiService's status writes. See status.h.
 */
#include "controller/status.h"

#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/json.h"

static void rfc3339(int64_t t, char *buf, size_t len)
{
    clock_rfc3339_format(buf, len, t, 0, 0);
}

cJSON *status_cond_find(const cJSON *conditions, const char *type)
{
    cJSON *cnd;
    cJSON_ArrayForEach(cnd, conditions)
    {
        const char *t = json_str(cnd, "type");
        if (t && strcmp(t, type) == 0)
            return cnd;
    }
    return NULL;
}

bool status_cond_reason_is(const cJSON *conditions, const char *type, const char *reason)
{
    const char *r = json_str(status_cond_find(conditions, type), "reason");
    return r && strcmp(r, reason) == 0;
}

static void replace_str(cJSON *o, const char *k, const char *v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(o, k);
    cJSON_AddStringToObject(o, k, v);
}

bool status_cond_set(cJSON *conditions, const char *type, bool status, const char *reason,
                     const char *message, int64_t generation, int64_t now)
{
    const char *st = status ? "True" : "False";
    if (!message)
        message = "";
    cJSON *cnd = status_cond_find(conditions, type);
    if (!cnd) {
        cnd = cJSON_CreateObject();
        cJSON_AddStringToObject(cnd, "type", type);
        if (!cJSON_AddItemToArray(conditions, cnd)) {
            cJSON_Delete(cnd); /* no array, or out of memory: nothing kept, a write is due */
            return true;
        }
    }
    const char *old = json_str(cnd, "status");
    const char *old_reason = json_str(cnd, "reason");
    const char *old_message = json_str(cnd, "message");
    bool changed = !old || strcmp(old, st) != 0 || !old_reason || strcmp(old_reason, reason) != 0 ||
                   !old_message || strcmp(old_message, message) != 0;
    if (!old || strcmp(old, st) != 0) {
        char at[32];
        rfc3339(now, at, sizeof(at));
        replace_str(cnd, "lastTransitionTime", at);
    }
    replace_str(cnd, "status", st);
    replace_str(cnd, "reason", reason);
    replace_str(cnd, "message", message);
    cJSON_DeleteItemFromObjectCaseSensitive(cnd, "observedGeneration");
    cJSON_AddNumberToObject(cnd, "observedGeneration", (double)generation);
    return changed;
}

cJSON *status_want(const char *mode, cJSON *ports, const cJSON *conditions, int64_t generation,
                   int64_t scaled_up, const cJSON *wake_with, const cJSON *last_cold_start)
{
    cJSON *want = cJSON_CreateObject();
    if (mode)
        cJSON_AddStringToObject(want, "mode", mode);
    if (ports)
        cJSON_AddItemToObject(want, "ports", ports);
    cJSON *conds = conditions ? cJSON_Duplicate(conditions, 1) : cJSON_CreateArray();
    cJSON *cnd;
    cJSON_ArrayForEach(cnd, conds)
    {
        cJSON_DeleteItemFromObjectCaseSensitive(cnd, "observedGeneration");
        cJSON_AddNumberToObject(cnd, "observedGeneration", (double)generation);
    }
    cJSON_AddItemToObject(want, "conditions", conds);
    cJSON_AddNumberToObject(want, "observedGeneration", (double)generation);
    if (scaled_up) {
        char up[32];
        rfc3339(scaled_up, up, sizeof(up));
        cJSON_AddStringToObject(want, "lastScaledUpTime", up);
    }
    if (wake_with)
        cJSON_AddItemToObject(want, "wakeWithReplicas", cJSON_Duplicate(wake_with, true));
    if (last_cold_start)
        cJSON_AddItemToObject(want, "lastColdStart", cJSON_Duplicate(last_cold_start, true));
    return want;
}

static const char *const WANT_MEMBERS[] = {"mode",
                                           "ports",
                                           "conditions",
                                           "observedGeneration",
                                           "lastScaledUpTime",
                                           "wakeWithReplicas",
                                           "lastColdStart"};

cJSON *status_shown(const cJSON *status)
{
    cJSON *shown = cJSON_CreateObject();
    for (size_t i = 0; i < sizeof(WANT_MEMBERS) / sizeof(WANT_MEMBERS[0]); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(status, WANT_MEMBERS[i]);
        if (v)
            cJSON_AddItemToObject(shown, WANT_MEMBERS[i], cJSON_Duplicate(v, 1));
    }
    return shown;
}

cJSON *status_changes(const cJSON *want, const cJSON *written)
{
    cJSON *changes = NULL;
    const cJSON *m;
    cJSON_ArrayForEach(m, want)
    {
        const cJSON *was = written ? cJSON_GetObjectItemCaseSensitive(written, m->string) : NULL;
        if (was && cJSON_Compare(m, was, true))
            continue;
        if (!changes)
            changes = cJSON_CreateObject();
        cJSON_AddItemToObject(changes, m->string, cJSON_Duplicate(m, 1));
    }
    return changes;
}

cJSON *status_patch(cJSON *changes, int64_t generation, int64_t now)
{
    char at[32];
    rfc3339(now, at, sizeof(at));
    cJSON *patch = cJSON_CreateObject();
    cJSON *status = changes ? changes : cJSON_CreateObject();
    cJSON_DeleteItemFromObjectCaseSensitive(status, "observedGeneration");
    cJSON_AddNumberToObject(status, "observedGeneration", (double)generation);
    cJSON_AddStringToObject(status, "lastReconciledTime", at);
    cJSON_AddItemToObject(patch, "status", status);
    return patch;
}

bool status_seen_has(status_rv *ring, const char *rv)
{
    for (size_t i = 0; ring && rv && i < STATUS_SEEN_RV_RING; i++)
        if (ring[i][0] && strcmp(ring[i], rv) == 0)
            return true;
    return false;
}

void status_seen_add(status_rv *ring, unsigned *next, const char *rv)
{
    if (!ring || !rv || strlen(rv) >= sizeof(ring[0]) || status_seen_has(ring, rv))
        return;
    snprintf(ring[*next % STATUS_SEEN_RV_RING], sizeof(ring[0]), "%s", rv);
    (*next)++;
}

enum status_echo status_echo(const char *answer_rv, const char *cached_rv, bool seen)
{
    if (!answer_rv)
        return STATUS_ECHO_NONE;
    if (cached_rv && strcmp(cached_rv, answer_rv) == 0)
        return STATUS_ECHO_DELIVERED;
    if (cached_rv && seen)
        return STATUS_ECHO_SUPERSEDED;
    return STATUS_ECHO_AWAIT;
}

bool status_echo_arrived(const char *awaited_rv, uint64_t awaited_ms, const char *rv,
                         uint64_t now_ms)
{
    return awaited_rv &&
           ((rv && strcmp(rv, awaited_rv) == 0) || now_ms - awaited_ms > STATUS_AWAIT_ECHO_MS);
}
