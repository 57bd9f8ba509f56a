/* pace: the window of released held connections per endpoint: slow start, growth by an
 * eighth past it, halving on a lost SYN (once per burst), growth on a stall. */
#include <criterion/criterion.h>

#include "resolver/pace.h"

#define MS 1000000ull

static struct pace_window w;

static void setup(void)
{
    w = (struct pace_window){0};
    pace_reset(&w, 4, 1000 * MS);
}

TestSuite(pace, .init = setup);

/* Takes up to n slots at now; returns how many were taken. */
static unsigned take(unsigned n, uint64_t now)
{
    unsigned got = 0;
    while (got < n && pace_take(&w, now))
        got++;
    return got;
}

/* Connects and answers n taken connections at now. */
static void answer(unsigned n, uint64_t now)
{
    for (unsigned i = 0; i < n; i++) {
        pace_connected(&w);
        pace_finish(&w, false, PACE_ANSWERED, now);
    }
}

Test(pace, the_share_of_each_worker_sums_to_the_initial_window)
{
    cr_assert_eq(pace_initial(1), PACE_INITIAL_WINDOW);
    cr_assert_eq(pace_initial(2), PACE_INITIAL_WINDOW / 2);
    cr_assert_eq(pace_initial(256), 1, "never below one");
}

Test(pace, a_full_window_waits_for_a_slot)
{
    cr_assert_eq(take(10, 1001 * MS), 4);
    cr_assert_eq(w.outstanding, 4);
    cr_assert_eq(w.connecting, 4);
    answer(1, 1002 * MS);
    cr_assert_eq(take(10, 1002 * MS), 1, "one answer frees one slot");
}

Test(pace, each_window_answered_doubles_it_up_to_slow_start_then_grows_by_an_eighth)
{
    cr_assert_eq(take(4, 1001 * MS), 4);
    answer(3, 1002 * MS);
    cr_assert_eq(w.limit, 4, "not before the whole window was answered");
    answer(1, 1002 * MS);
    cr_assert_eq(w.limit, 4 * PACE_SLOW_START_GROWTH, "slow start: doubled, up to its growth");
    cr_assert_eq(take(100, 1003 * MS), 8);
    answer(8, 1004 * MS);
    cr_assert_eq(w.limit, 9, "past it: an eighth, at least one");
    pace_reset(&w, 64, 2000 * MS);
    w.ssthresh = 64;
    cr_assert_eq(take(100, 2001 * MS), 64);
    answer(64, 2002 * MS);
    cr_assert_eq(w.limit, 72, "an eighth of 64");
}

Test(pace, a_connection_that_ends_unanswered_frees_its_slot_without_growth)
{
    cr_assert_eq(take(4, 1001 * MS), 4);
    pace_finish(&w, true, PACE_GONE, 1002 * MS);
    cr_assert_eq(w.outstanding, 3);
    cr_assert_eq(w.connecting, 3);
    cr_assert_eq(w.limit, 4);
    cr_assert_eq(w.answered, 0);
}

Test(pace, a_lost_syn_halves_the_window_once_per_burst)
{
    pace_reset(&w, 32, 1000 * MS);
    cr_assert_eq(take(32, 1001 * MS), 32);
    pace_lost(&w, 1101 * MS);
    cr_assert_eq(w.limit, 16);
    pace_lost(&w, 1102 * MS);
    cr_assert_eq(w.limit, 16, "the same burst's other drops do not halve again");
    pace_lost(&w, 1101 * MS + PACE_LOSS_MS * MS);
    cr_assert_eq(w.limit, 8, "a later burst does");
    cr_assert_eq(take(1, 1300 * MS), 0, "still 32 outstanding: nothing more goes");
}

Test(pace, a_connect_timeout_counts_as_a_loss)
{
    pace_reset(&w, 32, 1000 * MS);
    cr_assert_eq(take(1, 1001 * MS), 1);
    pace_finish(&w, true, PACE_LOST, 3001 * MS);
    cr_assert_eq(w.limit, 16);
    cr_assert_eq(w.outstanding, 0);
}

Test(pace, a_full_window_of_slow_requests_doubles_after_the_stall_time)
{
    cr_assert_eq(take(4, 1001 * MS), 4);
    for (int i = 0; i < 4; i++)
        pace_connected(&w);
    cr_assert_eq(take(1, 1000 * MS + PACE_STALL_MS * MS - 1), 0, "not yet");
    cr_assert_eq(take(1, 1000 * MS + PACE_STALL_MS * MS), 1, "stalled: grown");
    cr_assert_eq(w.limit, 8);
}

Test(pace, a_window_with_connects_pending_does_not_grow_on_a_stall)
{
    /* Pending connects are dropped SYNs, not slow requests: growing would overrun more. */
    cr_assert_eq(take(4, 1001 * MS), 4);
    cr_assert_eq(take(1, 5000 * MS), 0);
    cr_assert_eq(w.limit, 4);
}

Test(pace, a_reset_starts_the_window_again_and_keeps_the_outstanding)
{
    cr_assert_eq(take(4, 1001 * MS), 4);
    answer(4, 1002 * MS);
    cr_assert_eq(take(3, 1003 * MS), 3);
    pace_lost(&w, 1200 * MS);
    pace_reset(&w, 4, 2000 * MS);
    cr_assert_eq(w.limit, 4);
    cr_assert_eq(w.outstanding, 3);
    cr_assert_eq(w.ssthresh, 4 * PACE_SLOW_START_GROWTH);
    cr_assert_eq(take(10, 2001 * MS), 1);
}

Test(pace, the_window_never_passes_its_maximum)
{
    pace_reset(&w, PACE_MAX_WINDOW, 1000 * MS);
    w.ssthresh = 1;
    cr_assert_eq(take(PACE_MAX_WINDOW, 1001 * MS), PACE_MAX_WINDOW);
    answer(PACE_MAX_WINDOW, 1002 * MS);
    cr_assert_eq(w.limit, PACE_MAX_WINDOW);
}
