/* status: what a status write sends (conditions set only when changed, fields merged while a
 * write is in flight, the patch's stamps) and how a write's answer is told from its echo. */
#include <criterion/criterion.h>
#include <string.h>

#include "controller/status.h"

#define T0 ((int64_t)1700000000) /* 2023-11-14T22:13:20Z */

static const char *str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    cr_assert(cJSON_IsNumber(v), "%s is a number", k);
    return v->valuedouble;
}

Test(status, a_new_condition_is_a_change)
{
    cJSON *conds = cJSON_CreateArray();
    cr_assert(status_cond_set(conds, "Ready", true, "Serving", "pods", 3, T0));
    cJSON *c = status_cond_find(conds, "Ready");
    cr_assert_not_null(c);
    cr_assert_str_eq(str(c, "status"), "True");
    cr_assert_str_eq(str(c, "reason"), "Serving");
    cr_assert_str_eq(str(c, "message"), "pods");
    cr_assert_str_eq(str(c, "lastTransitionTime"), "2023-11-14T22:13:20Z");
    cr_assert_eq(num(c, "observedGeneration"), 3);
    cr_assert(status_cond_reason_is(conds, "Ready", "Serving"));
    cr_assert_not(status_cond_reason_is(conds, "Ready", "Proxying"));
    cr_assert_not(status_cond_reason_is(conds, "ScaledToZero", "Serving"));
    cJSON_Delete(conds);
}

Test(status, the_same_condition_again_is_no_change)
{
    cJSON *conds = cJSON_CreateArray();
    status_cond_set(conds, "Ready", true, "Serving", NULL, 1, T0);
    cr_assert_not(status_cond_set(conds, "Ready", true, "Serving", "", 2, T0 + 60),
                  "no write: it would chase its own echo");
    cJSON *c = status_cond_find(conds, "Ready");
    cr_assert_eq(num(c, "observedGeneration"), 2, "the generation follows all the same");
    cr_assert_eq(cJSON_GetArraySize(conds), 1);
    cJSON_Delete(conds);
}

Test(status, a_new_reason_or_message_is_a_change_but_no_transition)
{
    cJSON *conds = cJSON_CreateArray();
    status_cond_set(conds, "TriggerHealthy", false, "PrometheusUnhealthy", "a", 1, T0);
    cr_assert(
        status_cond_set(conds, "TriggerHealthy", false, "PrometheusUnhealthy", "b", 1, T0 + 60));
    cr_assert(status_cond_set(conds, "TriggerHealthy", false, "Other", "b", 1, T0 + 120));
    cr_assert_str_eq(str(status_cond_find(conds, "TriggerHealthy"), "lastTransitionTime"),
                     "2023-11-14T22:13:20Z", "the status did not change");
    cr_assert(status_cond_set(conds, "TriggerHealthy", true, "QueryOK", "", 1, T0 + 180));
    cr_assert_str_eq(str(status_cond_find(conds, "TriggerHealthy"), "lastTransitionTime"),
                     "2023-11-14T22:16:20Z");
    cJSON_Delete(conds);
}

static const cJSON *member(const cJSON *o, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(o, name);
}

Test(status, the_wanted_status_carries_mode_ports_conditions_generation_and_scale_up)
{
    cJSON *conds = cJSON_CreateArray();
    status_cond_set(conds, "Ready", true, "Serving", "", 1, T0);
    cJSON *want = status_want("serve", cJSON_Parse("[{\"resolverPort\":20000}]"), conds, 4,
                              T0 - 3600, NULL, NULL);
    cr_assert_str_eq(str(want, "mode"), "serve");
    cr_assert_eq(cJSON_GetArraySize(member(want, "ports")), 1);
    cr_assert_str_eq(str(want, "lastScaledUpTime"), "2023-11-14T21:13:20Z");
    cr_assert_eq(num(want, "observedGeneration"), 4);
    const cJSON *wc = member(want, "conditions");
    cr_assert_eq(cJSON_GetArraySize(wc), 1);
    cr_assert_eq(num(cJSON_GetArrayItem(wc, 0), "observedGeneration"), 4,
                 "every condition was evaluated against this generation");
    cJSON_Delete(want);
    want = status_want(NULL, NULL, conds, 1, 0, NULL, NULL);
    cr_assert_null(member(want, "mode"), "a replica that does not lead writes no mode");
    cr_assert_null(member(want, "ports"));
    cr_assert_null(member(want, "lastScaledUpTime"));
    cr_assert_null(member(want, "wakeWithReplicas"));
    cJSON_Delete(want);
    cJSON *ww = cJSON_Parse("{\"Deployment/worker\":3}");
    cJSON *lc = cJSON_Parse("{\"startedAt\":\"2026-12-05T21:00:00.000Z\",\"totalMs\":900,"
                            "\"phases\":{\"scaleSent\":3,\"firstByte\":900}}");
    want = status_want("proxy", NULL, conds, 1, 0, ww, lc);
    cr_assert(cJSON_Compare(member(want, "wakeWithReplicas"), ww, true),
              "the group's counts before zero, whole");
    cr_assert(cJSON_Compare(member(want, "lastColdStart"), lc, true),
              "the last cold start's phases, whole");
    cJSON *status = cJSON_Parse("{\"mode\":\"proxy\"}");
    cJSON_AddItemToObject(status, "lastColdStart", cJSON_Duplicate(lc, true));
    cJSON *shown = status_shown(status);
    cr_assert(cJSON_Compare(member(shown, "lastColdStart"), lc, true),
              "adopted as shown, so a replica that takes over does not write it again");
    cJSON *ch = status_changes(want, shown);
    cr_assert_null(member(ch, "lastColdStart"), "unchanged: not written again");
    cJSON_Delete(ch);
    cJSON_Delete(shown);
    cJSON_Delete(status);
    cJSON_Delete(lc);
    cJSON_Delete(want);
    cJSON_Delete(ww);
    cJSON_Delete(conds);
}

Test(status, nothing_is_written_when_nothing_changed)
{
    cJSON *conds = cJSON_CreateArray();
    status_cond_set(conds, "Ready", true, "Serving", "", 2, T0);
    cJSON *want = status_want("serve", NULL, conds, 2, 0, NULL, NULL);
    cJSON *all = status_changes(want, NULL);
    cr_assert_not_null(all, "nothing known written: everything is a change");
    cr_assert(cJSON_Compare(all, want, true));
    cr_assert_null(status_changes(want, all), "the same again: no write is due");
    /* what the API shows, with members a status write does not make, is the same */
    cJSON *api = cJSON_Duplicate(want, 1);
    cJSON_AddStringToObject(api, "lastReconciledTime", "2023-11-14T22:13:20Z");
    cJSON *shown = status_shown(api);
    cr_assert_null(member(shown, "lastReconciledTime"));
    cr_assert_null(status_changes(want, shown));
    cJSON_Delete(shown);
    cJSON_Delete(api);
    cJSON_Delete(all);
    cJSON_Delete(want);
    cJSON_Delete(conds);
}

Test(status, a_write_carries_only_what_changed_and_a_member_whole)
{
    cJSON *conds = cJSON_CreateArray();
    status_cond_set(conds, "Ready", true, "Serving", "", 2, T0);
    status_cond_set(conds, "ScaledToZero", false, "Serving", "", 2, T0);
    cJSON *written = status_want("serve", NULL, conds, 2, 0, NULL, NULL);
    status_cond_set(conds, "ScaledToZero", true, "BelowThreshold", "idle", 2, T0 + 5);
    cJSON *want = status_want("proxy", NULL, conds, 2, 0, NULL, NULL);
    cJSON *changes = status_changes(want, written);
    cr_assert_not_null(changes);
    cr_assert_str_eq(str(changes, "mode"), "proxy");
    cr_assert_eq(cJSON_GetArraySize(member(changes, "conditions")), 2,
                 "conditions are sent whole: a merge patch replaces an array");
    cr_assert_null(member(changes, "observedGeneration"), "unchanged");
    cr_assert_eq(cJSON_GetArraySize(changes), 2);
    cJSON_Delete(changes);
    /* a new generation: observedGeneration, and every condition's, changed */
    cJSON_Delete(want);
    want = status_want("proxy", NULL, conds, 3, 0, NULL, NULL);
    changes = status_changes(want, written);
    cr_assert_eq(num(changes, "observedGeneration"), 3);
    cJSON_Delete(changes);
    cJSON_Delete(want);
    cJSON_Delete(written);
    cJSON_Delete(conds);
}

Test(status, the_patch_carries_the_changes_the_generation_and_the_time)
{
    cJSON *patch =
        status_patch(cJSON_Parse("{\"mode\":\"serve\",\"observedGeneration\":1}"), 4, T0);
    const cJSON *st = member(patch, "status");
    cr_assert_str_eq(str(st, "mode"), "serve");
    cr_assert_str_eq(str(st, "lastReconciledTime"), "2023-11-14T22:13:20Z");
    cr_assert_eq(num(st, "observedGeneration"), 4);
    cJSON_Delete(patch);
    patch = status_patch(NULL, 2, T0);
    st = member(patch, "status");
    cr_assert_eq(cJSON_GetArraySize(st), 2, "a touch: the generation looked at, and when");
    cJSON_Delete(patch);
}

Test(status, the_seen_ring_keeps_the_last_three_versions)
{
    status_rv ring[STATUS_SEEN_RV_RING] = {{0}};
    unsigned next = 0;
    cr_assert_not(status_seen_has(ring, "1"));
    cr_assert_not(status_seen_has(NULL, "1"));
    status_seen_add(ring, &next, "1");
    status_seen_add(ring, &next, "1"); /* once */
    status_seen_add(ring, &next, "2");
    status_seen_add(ring, &next, "3");
    cr_assert(status_seen_has(ring, "1"));
    status_seen_add(ring, &next, "4");
    cr_assert_not(status_seen_has(ring, "1"), "the oldest went");
    cr_assert(status_seen_has(ring, "2") && status_seen_has(ring, "3") &&
              status_seen_has(ring, "4"));
    status_seen_add(ring, &next, "123456789012345678901234567890"); /* too long: not kept */
    cr_assert(status_seen_has(ring, "2"));
    status_seen_add(NULL, &next, "5");
    status_seen_add(ring, &next, NULL);
    cr_assert_eq(next, 4, "four versions kept in turn");
}

Test(status, the_answer_of_a_write_against_the_cache)
{
    cr_assert_eq(status_echo(NULL, "5", true), STATUS_ECHO_NONE);
    cr_assert_eq(status_echo("5", "5", false), STATUS_ECHO_DELIVERED);
    cr_assert_eq(status_echo("5", "6", true), STATUS_ECHO_SUPERSEDED);
    cr_assert_eq(status_echo("5", "4", false), STATUS_ECHO_AWAIT);
    cr_assert_eq(status_echo("5", NULL, true), STATUS_ECHO_AWAIT, "nothing cached");
}

Test(status, the_awaited_echo_arrives_or_is_given_up)
{
    cr_assert_not(status_echo_arrived(NULL, 0, "5", 1));
    cr_assert(status_echo_arrived("5", 1000, "5", 1001));
    cr_assert_not(status_echo_arrived("5", 1000, "4", 1000 + STATUS_AWAIT_ECHO_MS));
    cr_assert_not(status_echo_arrived("5", 1000, NULL, 1000 + STATUS_AWAIT_ECHO_MS));
    cr_assert(status_echo_arrived("5", 1000, "4", 1001 + STATUS_AWAIT_ECHO_MS));
}
