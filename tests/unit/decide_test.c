/* decide: every branch of the controller's pure decisions: the scale-down check, a trigger's
 * answer, the switch to zero's start and settle time, the meaning of the target's scale, and
 * the pods on their way out. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "controller/decide.h"

#define MIDNIGHT ((int64_t)86400 * 20000) /* a day boundary, UTC */

static struct decide_check_in idle_for(int64_t seconds)
{
    struct decide_check_in in = {
        .now = MIDNIGHT + 1800,
        .created = MIDNIGHT + 1800 - seconds,
        .cooldown_s = 600,
        .n_triggers = 1,
    };
    return in;
}

Test(decide, check_waits_out_the_cooldown_since_creation)
{
    struct decide_check_in in = idle_for(599);
    const char *why;
    char err[256];
    cr_assert_eq(decide_check(&in, &why, err, sizeof(err)), DECIDE_CHECK_COOLDOWN);
    cr_assert(strstr(why, "cooldown") != NULL, "%s", why);
    in = idle_for(600);
    cr_assert_eq(decide_check(&in, &why, err, sizeof(err)), DECIDE_CHECK_QUERY);
    cr_assert_str_eq(why, "");
    cr_assert_str_eq(err, "");
}

Test(decide, check_counts_the_cooldown_from_the_later_scale_up)
{
    struct decide_check_in in = idle_for(3600);
    in.last_scaled_up = in.now - 10;
    const char *why;
    cr_assert_eq(decide_check(&in, &why, NULL, 0), DECIDE_CHECK_COOLDOWN);
    in.last_scaled_up = in.now - 600;
    cr_assert_eq(decide_check(&in, &why, NULL, 0), DECIDE_CHECK_QUERY);
    /* an older scale-up than the creation (recreated under the same name): creation counts */
    in = idle_for(10);
    in.last_scaled_up = in.now - 9999;
    cr_assert_eq(decide_check(&in, &why, NULL, 0), DECIDE_CHECK_COOLDOWN);
}

Test(decide, check_keeps_to_the_enabled_period)
{
    struct decide_check_in in = idle_for(3600);
    in.has_period = true;
    in.schedule = "0 0 * * *";
    in.duration = "1h";
    const char *why;
    char err[256];
    cr_assert_eq(decide_check(&in, &why, err, sizeof(err)), DECIDE_CHECK_QUERY, "00:30 is in");
    in.now = MIDNIGHT + 43200;
    cr_assert_eq(decide_check(&in, &why, err, sizeof(err)), DECIDE_CHECK_OUTSIDE, "12:00 is out");
    cr_assert(strstr(why, "enabled period") != NULL, "%s", why);
}

Test(decide, check_fails_open_on_an_invalid_period)
{
    struct decide_check_in in = idle_for(3600);
    in.has_period = true;
    in.schedule = "not a schedule";
    const char *why;
    char err[256];
    cr_assert_eq(decide_check(&in, &why, err, sizeof(err)), DECIDE_CHECK_QUERY);
    cr_assert_neq(err[0], '\0', "the cron error is handed back to be logged");
}

Test(decide, check_needs_a_trigger)
{
    struct decide_check_in in = idle_for(3600);
    in.n_triggers = 0;
    const char *why;
    cr_assert_eq(decide_check(&in, &why, NULL, 0), DECIDE_CHECK_NO_TRIGGERS);
}

Test(decide, answer_below_the_threshold_is_idle)
{
    char why[256] = "";
    cr_assert_eq(decide_answer(PROM_OK, 0.4, "", false, 0.5, "", why, sizeof(why)),
                 DECIDE_ANSWER_IDLE);
    cr_assert_eq(decide_answer(PROM_OK, 0.5, "", false, 0.5, "", why, sizeof(why)),
                 DECIDE_ANSWER_BUSY, "at the threshold is not below it");
    cr_assert_eq(decide_answer(PROM_OK, 7, "", false, 0.5, "", why, sizeof(why)),
                 DECIDE_ANSWER_BUSY);
}

Test(decide, answer_of_the_uptime_check_must_be_one)
{
    char why[256] = "";
    cr_assert_eq(decide_answer(PROM_OK, 1, "", true, 0.5, "job=\"x\"", why, sizeof(why)),
                 DECIDE_ANSWER_IDLE);
    cr_assert_eq(decide_answer(PROM_OK, 0.98, "", true, 0.5, "job=\"x\"", why, sizeof(why)),
                 DECIDE_ANSWER_UNHEALTHY);
    cr_assert_str_eq(why, "Prometheus was not up for the whole cooldown (uptime check 0.98, "
                          "filter job=\"x\")");
}

Test(decide, answer_that_failed_is_unhealthy_with_its_reason)
{
    char why[256] = "";
    cr_assert_eq(
        decide_answer(PROM_UNREACHABLE, 0, "connection refused", false, 0.5, "", why, sizeof(why)),
        DECIDE_ANSWER_UNHEALTHY);
    char want[256];
    snprintf(want, sizeof(want), "%s: connection refused", prom_status_reason(PROM_UNREACHABLE));
    cr_assert_str_eq(why, want);
    cr_assert_eq(decide_answer(PROM_EMPTY, 0, "no series", true, 0.5, "", why, sizeof(why)),
                 DECIDE_ANSWER_UNHEALTHY);
}

Test(decide, settled_after_the_longest_of_grace_propagation_and_a_second)
{
    cr_assert(decide_settled(5000, 0, 0, 0), "no deletion: settled");
    cr_assert_not(decide_settled(10999, 10000, 0, 0), "at least 1 s");
    cr_assert(decide_settled(11000, 10000, 0, 0));
    cr_assert_not(decide_settled(14999, 10000, 5000, 0), "the grace period");
    cr_assert(decide_settled(15000, 10000, 5000, 0));
    cr_assert_not(decide_settled(15999, 10000, 5000, 3000), "twice the propagation");
    cr_assert(decide_settled(16000, 10000, 5000, 3000));
}

static struct decide_switch_in ready_switch(void)
{
    struct decide_switch_in in = {.now_ms = 1000000};
    return in;
}

Test(decide, switch_begins_when_nothing_holds_it)
{
    struct decide_switch_in in = ready_switch();
    const char *why;
    cr_assert_eq(decide_switch(&in, &why), DECIDE_SWITCH_BEGIN);
    cr_assert_str_eq(why, "");
}

Test(decide, switch_does_not_begin_twice)
{
    struct decide_switch_in in = ready_switch();
    in.switching = true;
    const char *why;
    cr_assert_eq(decide_switch(&in, &why), DECIDE_SWITCH_UNDER_WAY);
}

Test(decide, switch_waits_after_an_abandoned_attempt)
{
    struct decide_switch_in in = ready_switch();
    in.retry_ms = in.now_ms + 1;
    const char *why;
    cr_assert_eq(decide_switch(&in, &why), DECIDE_SWITCH_ABANDONED);
    in.retry_ms = in.now_ms;
    cr_assert_eq(decide_switch(&in, &why), DECIDE_SWITCH_BEGIN);
}

Test(decide, switch_waits_for_the_last_deletion_to_propagate)
{
    struct decide_switch_in in = ready_switch();
    in.slices_deleted_ms = in.now_ms - 500;
    const char *why;
    cr_assert_eq(decide_switch(&in, &why), DECIDE_SWITCH_UNSETTLED);
}

Test(decide, switch_waits_after_the_api_server_came_back)
{
    struct decide_switch_in in = ready_switch();
    in.api_back_ms = in.now_ms - (DECIDE_API_SETTLE_MS - 1);
    const char *why;
    cr_assert_eq(decide_switch(&in, &why), DECIDE_SWITCH_API_BACK);
    in.api_back_ms = in.now_ms - DECIDE_API_SETTLE_MS;
    cr_assert_eq(decide_switch(&in, &why), DECIDE_SWITCH_BEGIN);
}

Test(decide, scale_by_hand_to_zero_goes_to_proxy)
{
    cr_assert_eq(decide_scale(0, false, false), DECIDE_SCALE_TO_PROXY);
    cr_assert_eq(decide_scale(0, true, true), DECIDE_SCALE_NOTHING, "already proxying");
}

Test(decide, scale_up_while_proxying_serves_once_ready)
{
    cr_assert_eq(decide_scale(1, true, true), DECIDE_SCALE_TO_SERVE);
    cr_assert_eq(decide_scale(1, true, false), DECIDE_SCALE_WAKING);
}

Test(decide, scale_up_while_serving_is_the_checks_turn)
{
    cr_assert_eq(decide_scale(3, false, false), DECIDE_SCALE_SERVING);
    cr_assert_eq(decide_scale(3, false, true), DECIDE_SCALE_SERVING);
    cr_assert_eq(decide_scale(-1, false, false), DECIDE_SCALE_NOTHING);
}

Test(decide, leaving_pods_do_not_count_until_their_time_is_up)
{
    struct leaving_pod l[2] = {{"10.0.0.1", false}, {"10.0.0.2", false}};
    cr_assert(decide_leaving("10.0.0.2", l, 2, 2000, 1999));
    cr_assert_not(decide_leaving("10.0.0.3", l, 2, 2000, 1999), "a new pod counts");
    cr_assert_not(decide_leaving("10.0.0.1", l, 2, 2000, 2000), "stays ready past the limit");
    cr_assert_not(decide_leaving("10.0.0.1", l, 0, 2000, 1), "none recorded");
}

Test(decide, a_pod_known_gone_never_counts_however_late_its_listing)
{
    struct leaving_pod l[2] = {{"10.0.0.1", true}, {"10.0.0.2", false}};
    cr_assert(decide_leaving("10.0.0.1", l, 2, 2000, 1999));
    cr_assert(decide_leaving("10.0.0.1", l, 2, 2000, 2000),
              "a deleted pod still listed ready is a stale listing, past the limit too");
    cr_assert(decide_leaving("10.0.0.1", l, 2, 2000, 3600000));
    cr_assert_not(decide_leaving("10.0.0.2", l, 2, 2000, 2000), "not known gone: counts");
}

Test(decide, wake_replicas_without_capacity_is_min_target_replicas)
{
    cr_assert_eq(decide_wake_replicas(0, 0, 1, 0), 1);
    cr_assert_eq(decide_wake_replicas(500, 0, 3, 0), 3);
    cr_assert_eq(decide_wake_replicas(500, 0, 3, 10), 3);
    cr_assert_eq(decide_wake_replicas(7, 0, 0, 0), 1); /* min below 1 counts as 1 */
}

Test(decide, wake_replicas_is_held_over_capacity_rounded_up)
{
    cr_assert_eq(decide_wake_replicas(7, 2, 1, 0), 4);
    cr_assert_eq(decide_wake_replicas(8, 2, 1, 0), 4);
    cr_assert_eq(decide_wake_replicas(9, 2, 1, 0), 5);
    cr_assert_eq(decide_wake_replicas(1, 10, 1, 0), 1);
    cr_assert_eq(decide_wake_replicas(11, 10, 1, 0), 2);
    cr_assert_eq(decide_wake_replicas(100000, 1, 1, 0), 100000); /* no bound of its own */
}

Test(decide, wake_replicas_is_clamped_to_min_and_max)
{
    cr_assert_eq(decide_wake_replicas(1, 2, 3, 0), 3);  /* fewer held than min's worth */
    cr_assert_eq(decide_wake_replicas(0, 2, 2, 5), 2);  /* nothing held (a finalizer restore) */
    cr_assert_eq(decide_wake_replicas(-4, 2, 2, 5), 2); /* a negative count counts as none */
    cr_assert_eq(decide_wake_replicas(7, 2, 1, 3), 3);  /* max below the ceil */
    cr_assert_eq(decide_wake_replicas(7, 2, 1, 4), 4);  /* max at the ceil */
    cr_assert_eq(decide_wake_replicas(7, 2, 5, 3), 5);  /* refused at parse; min would win */
    cr_assert_eq(decide_wake_replicas(2147483647L, 1, 1, 7), 7);
}
