/* clock: RFC 3339 written and read back, monotonic and wall clocks that move forward. */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"

Test(clock, rfc3339_seconds_is_a_kubernetes_time)
{
    char buf[CLOCK_RFC3339_MAX];
    cr_assert_eq(clock_rfc3339_format(buf, sizeof(buf), 1795356000LL, 999999999, 0), 0);
    cr_assert_str_eq(buf, "2026-11-22T14:00:00Z");
    cr_assert_eq(clock_rfc3339_format(buf, sizeof(buf), 0, 0, 0), 0);
    cr_assert_str_eq(buf, "1970-01-01T00:00:00Z");
}

Test(clock, rfc3339_fraction_is_cut_to_the_digits_asked)
{
    char buf[CLOCK_RFC3339_MAX];
    cr_assert_eq(clock_rfc3339_format(buf, sizeof(buf), 1795356000LL, 123456789, 6), 0);
    cr_assert_str_eq(buf, "2026-11-22T14:00:00.123456Z");
    cr_assert_eq(clock_rfc3339_format(buf, sizeof(buf), 1795356000LL, 1000, 6), 0);
    cr_assert_str_eq(buf, "2026-11-22T14:00:00.000001Z");
    cr_assert_eq(clock_rfc3339_format(buf, sizeof(buf), 1795356000LL, 123999999, 3), 0);
    cr_assert_str_eq(buf, "2026-11-22T14:00:00.123Z");
    cr_assert_eq(clock_rfc3339_format(buf, sizeof(buf), 1795356000LL, 5, 9), 0);
    cr_assert_str_eq(buf, "2026-11-22T14:00:00.000000005Z");
    cr_assert_eq(strlen(buf) + 1 <= CLOCK_RFC3339_MAX, true);
}

Test(clock, rfc3339_refuses_a_short_buffer_or_odd_digits)
{
    char buf[CLOCK_RFC3339_MAX];
    /* "2026-11-22T14:00:00.000001Z" is 27 characters: 27 bytes leave no room for the NUL. */
    cr_assert_eq(clock_rfc3339_format(buf, 27, 1795356000LL, 1000, 6), -1);
    cr_assert_str_eq(buf, "");
    cr_assert_eq(clock_rfc3339_format(buf, 28, 1795356000LL, 1000, 6), 0);
    cr_assert_eq(clock_rfc3339_format(buf, 20, 1795356000LL, 0, 0), -1);
    cr_assert_eq(clock_rfc3339_format(buf, sizeof(buf), 1795356000LL, 0, 2), -1);
    cr_assert_eq(clock_rfc3339_format(buf, 0, 1795356000LL, 0, 0), -1);
}

Test(clock, rfc3339_parse_reads_what_format_writes)
{
    int64_t t = -1;
    cr_assert_eq(clock_rfc3339_parse("2026-11-22T14:00:00Z", &t), 0);
    cr_assert_eq(t, 1795356000LL);
    cr_assert_eq(clock_rfc3339_parse("2026-11-22T14:00:00.123456Z", &t), 0);
    cr_assert_eq(t, 1795356000LL);
    cr_assert_eq(clock_rfc3339_parse("2026-11-22T14:00:00", &t), 0, "no zone reads as UTC");
    cr_assert_eq(t, 1795356000LL);
    cr_assert_eq(clock_rfc3339_parse("2026-11-22T16:00:00+02:00", &t), 0);
    cr_assert_eq(t, 1795356000LL);
    cr_assert_eq(clock_rfc3339_parse("2026-11-22T13:30:00.5-00:30", &t), 0);
    cr_assert_eq(t, 1795356000LL);
    for (int64_t s = 0; s < 4000000000LL; s += 123456789) {
        char buf[CLOCK_RFC3339_MAX];
        cr_assert_eq(clock_rfc3339_format(buf, sizeof(buf), s, 0, 0), 0);
        cr_assert_eq(clock_rfc3339_parse(buf, &t), 0);
        cr_assert_eq(t, s, "%s", buf);
    }
}

Test(clock, rfc3339_parse_refuses_what_is_not_a_time)
{
    int64_t t = 7;
    cr_assert_eq(clock_rfc3339_parse(NULL, &t), -1);
    cr_assert_eq(clock_rfc3339_parse("", &t), -1);
    cr_assert_eq(clock_rfc3339_parse("yesterday", &t), -1);
    cr_assert_eq(clock_rfc3339_parse("2026-11-22", &t), -1);
    cr_assert_eq(t, 7);
}

Test(clock, monotonic_and_wall_clocks_agree_with_the_system)
{
    uint64_t ns = clock_mono_ns(), ms = clock_mono_ms();
    cr_assert(ms >= ns / 1000000 && ms - ns / 1000000 < 1000);
    uint64_t later = clock_mono_ns();
    cr_assert(later >= ns);
    int64_t s = clock_wall_s();
    time_t sys = time(NULL);
    cr_assert(s <= (int64_t)sys && (int64_t)sys - s <= 1);
    uint64_t wall_ns = clock_wall_ns();
    cr_assert((int64_t)(wall_ns / 1000000000) - s <= 1 && (int64_t)(wall_ns / 1000000000) >= s);
}
