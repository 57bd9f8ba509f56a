/*
 * duration_cron_fuzz: Go durations (common/duration.c) and enabledPeriod schedules
 * (controller/cron.c).
 *
 * Input, line by line: an instant (decimal Unix seconds; empty: 1700000000), a duration
 * ("90s"), and the schedule: everything after the second line ("*\/5 9-17 * * MON-FRI").
 *
 * Checks, beyond the sanitizers:
 *   - a parsed duration formats to at most DURATION_TEXT_MAX bytes and parses back to itself,
 *     and so does the instant's value read as nanoseconds;
 *   - for a parsed schedule: cron_next(t) is a later whole minute the schedule matches, with
 *     no activation between t and it; cron_prev(t) likewise backwards;
 *   - cron_window_active agrees with "the last activation at or before now is less than the
 *     duration ago" for durations cron_prev's five-year reach covers.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/duration.h"
#include "controller/cron.h"
#include "fuzz_util.h"

#define MIN_UNIX INT64_C(-62135596800) /* 0001-01-01, as cron.c */
#define MAX_UNIX INT64_C(253402300799) /* 9999-12-31 23:59:59 */
#define FOUR_YEARS_NS (INT64_C(4) * 365 * 86400 * DURATION_NS_PER_S)

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_logging();
    return 0;
}

static void check_roundtrip(int64_t ns)
{
    char text[DURATION_TEXT_MAX];
    size_t n = duration_format(ns, text, sizeof(text));
    if (n >= sizeof(text) || strlen(text) != n)
        fuzz_fail("duration_format(%" PRId64 ") wrote %zu bytes", ns, n);
    int64_t back = 0;
    char err[128];
    if (duration_parse(text, &back, err, sizeof(err)) != 0 || back != ns)
        fuzz_fail("duration %" PRId64 " formats as \"%s\", which parses to %" PRId64 " (%s)", ns,
                  text, back, err);
    char tiny[4];
    duration_format(ns, tiny, sizeof(tiny)); /* truncates, NUL-terminated */
    if (!memchr(tiny, '\0', sizeof(tiny)))
        fuzz_fail("duration_format did not NUL-terminate a short buffer");
}

static bool in_range(int64_t t)
{
    return t >= MIN_UNIX && t <= MAX_UNIX;
}

static void check_schedule(const struct cron_schedule *s, int64_t t)
{
    int64_t next = cron_next(s, t);
    if (next != CRON_NONE && in_range(t) && in_range(next)) {
        if (next <= t || next % 60 != 0 || !cron_matches(s, next))
            fuzz_fail("cron_next(%" PRId64 ") = %" PRId64 " is not a later activation", t, next);
        int64_t before = cron_prev(s, next - 1);
        if (before != CRON_NONE && before > t)
            fuzz_fail("activation %" PRId64 " lies between %" PRId64 " and cron_next %" PRId64,
                      before, t, next);
        if (cron_prev(s, next) != next)
            fuzz_fail("cron_prev(%" PRId64 ") misses the activation itself", next);
    }
    int64_t prev = cron_prev(s, t);
    if (prev != CRON_NONE && in_range(t) && in_range(prev)) {
        if (prev > t || prev % 60 != 0 || !cron_matches(s, prev))
            fuzz_fail("cron_prev(%" PRId64 ") = %" PRId64 " is not an earlier activation", t, prev);
        int64_t after = cron_next(s, prev);
        if (after != CRON_NONE && after <= t)
            fuzz_fail("activation %" PRId64 " lies between cron_prev %" PRId64 " and %" PRId64,
                      after, prev, t);
    }
}

static void check_window(const struct cron_schedule *s, int64_t duration_ns, int64_t now)
{
    bool active = cron_window_active(s, duration_ns, now);
    if (duration_ns <= 0 || duration_ns > FOUR_YEARS_NS || !in_range(now)) {
        if (duration_ns <= 0 && active)
            fuzz_fail("a window of no length is active");
        return;
    }
    int64_t last = cron_prev(s, now);
    bool expect = last != CRON_NONE && now - last < INT64_MAX / DURATION_NS_PER_S &&
                  (now - last) * DURATION_NS_PER_S < duration_ns;
    if (active != expect)
        fuzz_fail("cron_window_active(now %" PRId64 ", %" PRId64 " ns) = %d, but the last "
                  "activation is %" PRId64,
                  now, duration_ns, active, last);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct fuzz_reader r = {data, size, 0};
    const uint8_t *line;
    size_t len;
    int64_t now = 1700000000;
    if (fuzz_next_line(&r, &line, &len) && len) {
        char *s = fuzz_strndup(line, len);
        now = (int64_t)strtoll(s, NULL, 10);
        free(s);
    }
    char *duration = NULL;
    if (fuzz_next_line(&r, &line, &len))
        duration = fuzz_strndup(line, len);
    const uint8_t *rest = fuzz_rest(&r, &len);
    char *schedule = fuzz_strndup(rest, len);

    check_roundtrip(now);
    int64_t ns = 0;
    char err[256];
    memset(err, 'x', sizeof(err));
    bool have_ns = duration && duration_parse(duration, &ns, err, sizeof(err)) == 0;
    if (have_ns)
        check_roundtrip(ns);
    else if (duration && !memchr(err, '\0', sizeof(err)))
        fuzz_fail("duration_parse failed without a NUL-terminated message");

    struct cron_schedule s;
    memset(err, 'x', sizeof(err));
    if (cron_parse(schedule, &s, err, sizeof(err)) == 0) {
        check_schedule(&s, now);
        check_schedule(&s, now - now % 60);
        if (have_ns)
            check_window(&s, ns, now);
    } else if (!memchr(err, '\0', sizeof(err))) {
        fuzz_fail("cron_parse failed without a NUL-terminated message");
    }

    bool active = false;
    memset(err, 'x', sizeof(err));
    if (cron_enabled_period(schedule, duration, now, &active, err, sizeof(err)) != 0 &&
        !memchr(err, '\0', sizeof(err)))
        fuzz_fail("cron_enabled_period failed without a NUL-terminated message");

    free(duration);
    free(schedule);
    return 0;
}
