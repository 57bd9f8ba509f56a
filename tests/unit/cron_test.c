/*
 * cron: robfig/cron v3 ParseStandard semantics and KubeElasti's enabledPeriod window. Expected
 * instants are worked out by hand from the calendar (2024-01-15 is a Monday, 2024 and 2028 are
 * leap years, 2100 is not) and written as dates; timegm() turns them into Unix seconds, so the
 * expectations do not go through the calendar code under test. A brute-force search built on
 * gmtime_r() cross-checks cron_next/cron_prev on many schedules and instants.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/duration.h"
#include "controller/cron.h"

static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {0};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    return (int64_t)timegm(&tm);
}

static const char *show(int64_t t, char *buf, size_t len)
{
    if (t == CRON_NONE) {
        snprintf(buf, len, "none");
        return buf;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S %a", &tm);
    return buf;
}

static struct cron_schedule must_parse(const char *expr)
{
    struct cron_schedule s;
    char err[256] = "";
    cr_assert_eq(cron_parse(expr, &s, err, sizeof(err)), 0, "%s: %s", expr, err);
    return s;
}

/* ---- parsing ---- */

struct bits_case {
    const char *expr;
    uint64_t minute;
    uint32_t hour, dom;
    uint16_t month;
    uint8_t dow;
    bool dom_star, dow_star;
};

#define ALL_MIN ((UINT64_C(1) << 60) - 1)
#define ALL_HOUR ((UINT32_C(1) << 24) - 1)
#define ALL_DOM (UINT32_C(0xfffffffe))
#define ALL_MONTH ((uint16_t)0x1ffe)
#define ALL_DOW ((uint8_t)0x7f)

static const struct bits_case bit_cases[] = {
    {"* * * * *", ALL_MIN, ALL_HOUR, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"0 0 * * *", 1, 1, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"? ? ? ? ?", ALL_MIN, ALL_HOUR, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"0 9 * * 1-5", 1, 1 << 9, ALL_DOM, ALL_MONTH, 0x3e, true, false},
    {"*/15 8-17 * * 1-5", 1 | 1 << 15 | UINT64_C(1) << 30 | UINT64_C(1) << 45, 0x3ff00, ALL_DOM,
     ALL_MONTH, 0x3e, true, false},
    /* a/n is a-max/n */
    {"5/20 * * * *", UINT64_C(1) << 5 | UINT64_C(1) << 25 | UINT64_C(1) << 45, ALL_HOUR, ALL_DOM,
     ALL_MONTH, ALL_DOW, true, true},
    {"10-40/15 * * * *", UINT64_C(1) << 10 | UINT64_C(1) << 25 | UINT64_C(1) << 40, ALL_HOUR,
     ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    /* a star with a step above 1 is not a star; with step 1 it is */
    {"0 0 */2 * */1", 1, 1, 0xaaaaaaaau, ALL_MONTH, ALL_DOW, false, true},
    {"0 0 1-31 * 0-6", 1, 1, ALL_DOM, ALL_MONTH, ALL_DOW, false, false},
    /* names, any case; ranges and steps of names */
    {"0 0 * jan-MAR,Dec sun,SAT", 1, 1, ALL_DOM, 0x100e, 0x41, true, false},
    {"0 0 * FEB/3 mon/2", 1, 1, ALL_DOM, 1 << 2 | 1 << 5 | 1 << 8 | 1 << 11,
     1 << 1 | 1 << 3 | 1 << 5, true, false},
    /* robfig quirks: empty list items skipped, "*-x" is "*", '+' accepted, leading zeros */
    {"1,,2, * * * *", 6, ALL_HOUR, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"*-5 * * * *", ALL_MIN, ALL_HOUR, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"+5 +07 * * *", UINT64_C(1) << 5, 1 << 7, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {", * * * *", 0, ALL_HOUR, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"0 0 1 * *,1", 1, 1, 1 << 1, ALL_MONTH, ALL_DOW, false, true},
    /* descriptors */
    {"@yearly", 1, 1, 1 << 1, 1 << 1, ALL_DOW, false, true},
    {"@annually", 1, 1, 1 << 1, 1 << 1, ALL_DOW, false, true},
    {"@monthly", 1, 1, 1 << 1, ALL_MONTH, ALL_DOW, false, true},
    {"@weekly", 1, 1, ALL_DOM, ALL_MONTH, 1, true, false},
    {"@daily", 1, 1, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"@midnight", 1, 1, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"@hourly", 1, ALL_HOUR, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    /* white space is Go's strings.Fields: tabs, newlines, NBSP, ideographic space */
    {"  0\t0\n*\xc2\xa0*\xe3\x80\x80*  ", 1, 1, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    /* UTC under any of its names */
    {"TZ=UTC 0 0 * * *", 1, 1, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"CRON_TZ=Etc/UTC 0 0 * * *", 1, 1, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"TZ=GMT @hourly", 1, ALL_HOUR, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"TZ=Zulu   @daily \t", 1, 1, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
    {"TZ= 0 0 * * *", 1, 1, ALL_DOM, ALL_MONTH, ALL_DOW, true, true},
};

Test(cron, parses_fields_into_robfig_bit_sets)
{
    for (size_t i = 0; i < sizeof(bit_cases) / sizeof(bit_cases[0]); i++) {
        const struct bits_case *c = &bit_cases[i];
        struct cron_schedule s = must_parse(c->expr);
        cr_expect_eq(s.minute, c->minute, "%s: minute %llx", c->expr, (unsigned long long)s.minute);
        cr_expect_eq(s.hour, c->hour, "%s: hour %x", c->expr, s.hour);
        cr_expect_eq(s.dom, c->dom, "%s: dom %x", c->expr, s.dom);
        cr_expect_eq(s.month, c->month, "%s: month %x", c->expr, s.month);
        cr_expect_eq(s.dow, c->dow, "%s: dow %x", c->expr, s.dow);
        cr_expect_eq(s.dom_star, c->dom_star, "%s: dom_star", c->expr);
        cr_expect_eq(s.dow_star, c->dow_star, "%s: dow_star", c->expr);
    }
}

struct reject_case {
    const char *expr;
    const char *message; /* the whole message */
};

static const struct reject_case rejects[] = {
    {"", "schedule \"\": empty schedule"},
    {"   ", "schedule \"   \": expected exactly 5 fields (minute hour day-of-month month "
            "day-of-week), found 0"},
    {"0 0 *", "schedule \"0 0 *\": expected exactly 5 fields (minute hour day-of-month month "
              "day-of-week), found 3"},
    {"0 0 0 * * *", "schedule \"0 0 0 * * *\": expected exactly 5 fields (minute hour "
                    "day-of-month month day-of-week), found 6"},
    {"60 * * * *", "schedule \"60 * * * *\": minute: 60 is above the maximum 59"},
    {"0 24 * * *", "schedule \"0 24 * * *\": hour: 24 is above the maximum 23"},
    {"0 0 0 * *", "schedule \"0 0 0 * *\": day-of-month: 0 is below the minimum 1"},
    {"0 0 32 * *", "schedule \"0 0 32 * *\": day-of-month: 32 is above the maximum 31"},
    {"0 0 * 0 *", "schedule \"0 0 * 0 *\": month: 0 is below the minimum 1"},
    {"0 0 * 13 *", "schedule \"0 0 * 13 *\": month: 13 is above the maximum 12"},
    {"0 0 * * 7", "schedule \"0 0 * * 7\": day-of-week: 7 is above the maximum 6 (Sunday is 0)"},
    {"0 0 * * 5-7",
     "schedule \"0 0 * * 5-7\": day-of-week: 7 is above the maximum 6 (Sunday is 0)"},
    {"0 0 * * FRI-MON", "schedule \"0 0 * * FRI-MON\": day-of-week: range \"FRI-MON\" runs "
                        "backwards (5 > 1); ranges do not wrap"},
    {"0 22-2 * * *", "schedule \"0 22-2 * * *\": hour: range \"22-2\" runs backwards (22 > 2); "
                     "ranges do not wrap"},
    {"*/0 * * * *", "schedule \"*/0 * * * *\": minute: step must be a positive number in \"*/0\""},
    {"*/-2 * * * *", "schedule \"*/-2 * * * *\": minute: negative number -2 not allowed"},
    {"1-2-3 * * * *", "schedule \"1-2-3 * * * *\": minute: too many hyphens in \"1-2-3\""},
    {"*/2/3 * * * *", "schedule \"*/2/3 * * * *\": minute: too many slashes in \"*/2/3\""},
    {"a * * * *", "schedule \"a * * * *\": minute: \"a\" is not a number"},
    {"-1 * * * *", "schedule \"-1 * * * *\": minute: \"\" is not a number"},
    {"5- * * * *", "schedule \"5- * * * *\": minute: \"\" is not a number"},
    {"5/ * * * *", "schedule \"5/ * * * *\": minute: \"\" is not a step number"},
    {"0 0 * JANUARY *", "schedule \"0 0 * JANUARY *\": month: \"JANUARY\" is not a number or a "
                        "three-letter name"},
    {"0 0 * * mon/x", "schedule \"0 0 * * mon/x\": day-of-week: \"x\" is not a step number"},
    {"0 0 1W * *", "schedule \"0 0 1W * *\": day-of-month: \"1W\" is not a number"},
    {"0 0 L * *", "schedule \"0 0 L * *\": day-of-month: \"L\" is not a number"},
    {"0 0 * * 5#2", "schedule \"0 0 * * 5#2\": day-of-week: \"5#2\" is not a number or a "
                    "three-letter name"},
    {" @daily", "schedule \" @daily\": expected exactly 5 fields (minute hour day-of-month "
                "month day-of-week), found 1"},
    {"@daily ", "schedule \"@daily \": unrecognized descriptor (use @yearly, @annually, "
                "@monthly, @weekly, @daily, @midnight or @hourly)"},
    {"@DAILY", "schedule \"@DAILY\": unrecognized descriptor (use @yearly, @annually, "
               "@monthly, @weekly, @daily, @midnight or @hourly)"},
    {"@reboot", "schedule \"@reboot\": unrecognized descriptor (use @yearly, @annually, "
                "@monthly, @weekly, @daily, @midnight or @hourly)"},
    {"@every 1h", "schedule \"@every 1h\": @every is not supported: its activations count from "
                  "whenever the schedule is asked, so a window has no fixed start; write a "
                  "5-field schedule such as \"0 */2 * * *\""},
    {"@every 90x", "schedule \"@every 90x\": duration \"90x\": unknown unit \"x\" (valid units: "
                   "ns, us, µs, ms, s, m, h)"},
    {"TZ=America/New_York 0 0 * * *",
     "schedule \"TZ=America/New_York 0 0 * * *\": time zone \"America/New_York\" is not "
     "supported: holdfast evaluates schedules in UTC only (use TZ=UTC or no prefix)"},
    {"CRON_TZ=Local 0 0 * * *",
     "schedule \"CRON_TZ=Local 0 0 * * *\": time zone \"Local\" is not supported: holdfast "
     "evaluates schedules in UTC only (use TZ=UTC or no prefix)"},
    {"TZ=utc 0 0 * * *", "schedule \"TZ=utc 0 0 * * *\": time zone \"utc\" is not supported: "
                         "holdfast evaluates schedules in UTC only (use TZ=UTC or no prefix)"},
    {"TZ=UTC", "schedule \"TZ=UTC\": a TZ= or CRON_TZ= prefix must be followed by a space and "
               "the schedule"},
    {"TZ=UTC\t0 0 * * *",
     "schedule \"TZ=UTC\\x090 0 * * *\": time zone \"UTC\t0\" is not supported: holdfast "
     "evaluates schedules in UTC only (use TZ=UTC or no prefix)"},
    {"TZ=UTC ", "schedule \"TZ=UTC \": expected exactly 5 fields (minute hour day-of-month "
                "month day-of-week), found 0"},
};

Test(cron, rejects_what_robfig_rejects_with_a_message)
{
    for (size_t i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) {
        struct cron_schedule s;
        memset(&s, 0xab, sizeof(s));
        char err[512] = "";
        cr_expect_eq(cron_parse(rejects[i].expr, &s, err, sizeof(err)), -1, "%s accepted",
                     rejects[i].expr);
        cr_expect_str_eq(err, rejects[i].message);
        cr_expect_eq(s.minute, UINT64_C(0xabababababababab), "%s: output written on error",
                     rejects[i].expr);
    }
}

Test(cron, null_and_tiny_error_buffers_are_safe)
{
    struct cron_schedule s;
    char err[8];
    cr_assert_eq(cron_parse(NULL, &s, NULL, 0), -1);
    cr_assert_eq(cron_parse("61 * * * *", &s, err, sizeof(err)), -1);
    cr_assert_eq(strlen(err), sizeof(err) - 1);
}

/* ---- next activation ---- */

struct next_case {
    const char *expr;
    int64_t after;
    int64_t want; /* CRON_NONE for none */
};

static void check_next(const struct next_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct cron_schedule s = must_parse(cases[i].expr);
        int64_t got = cron_next(&s, cases[i].after);
        char a[64], g[64], w[64];
        cr_expect_eq(got, cases[i].want, "%s after %s: got %s want %s", cases[i].expr,
                     show(cases[i].after, a, sizeof(a)), show(got, g, sizeof(g)),
                     show(cases[i].want, w, sizeof(w)));
    }
}

Test(cron, next_is_strictly_after_and_whole_minutes)
{
    const struct next_case cases[] = {
        {"* * * * *", utc(2024, 1, 15, 12, 0, 0), utc(2024, 1, 15, 12, 1, 0)},
        {"* * * * *", utc(2024, 1, 15, 12, 0, 30), utc(2024, 1, 15, 12, 1, 0)},
        {"* * * * *", utc(2024, 1, 15, 12, 0, 59), utc(2024, 1, 15, 12, 1, 0)},
        {"0 0 * * *", utc(2024, 1, 15, 0, 0, 0), utc(2024, 1, 16, 0, 0, 0)},
        {"0 0 * * *", utc(2024, 1, 14, 23, 59, 59), utc(2024, 1, 15, 0, 0, 0)},
        {"30 9 * * *", utc(2024, 1, 15, 9, 29, 59), utc(2024, 1, 15, 9, 30, 0)},
        {"30 9 * * *", utc(2024, 1, 15, 9, 30, 0), utc(2024, 1, 16, 9, 30, 0)},
        /* before 1970: the answer can be 0, which is not "none" */
        {"0 0 * * *", utc(1969, 12, 31, 12, 0, 0), 0},
        {"0 12 * * *", -1, utc(1970, 1, 1, 12, 0, 0)},
    };
    check_next(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(cron, next_day_of_month_or_day_of_week)
{
    const struct next_case cases[] = {
        /* both restricted: the 13th OR a Friday */
        {"0 0 13 * FRI", utc(2024, 1, 1, 0, 0, 0), utc(2024, 1, 5, 0, 0, 0)},
        {"0 0 13 * FRI", utc(2024, 1, 12, 0, 0, 0), utc(2024, 1, 13, 0, 0, 0)},
        {"0 0 13 * FRI", utc(2024, 1, 13, 0, 0, 0), utc(2024, 1, 19, 0, 0, 0)},
        /* one of them a star: both must hold */
        {"0 0 13 * *", utc(2024, 1, 1, 0, 0, 0), utc(2024, 1, 13, 0, 0, 0)},
        {"0 0 * * FRI", utc(2024, 1, 5, 0, 0, 0), utc(2024, 1, 12, 0, 0, 0)},
        {"0 0 ? * 5", utc(2024, 1, 5, 0, 0, 0), utc(2024, 1, 12, 0, 0, 0)},
        {"0 0 13 * ?", utc(2024, 1, 13, 0, 0, 0), utc(2024, 2, 13, 0, 0, 0)},
        /* Friday the 13th needs a star-free AND, which cron cannot say: this is OR */
        {"0 0 13 9 5", utc(2024, 9, 1, 0, 0, 0), utc(2024, 9, 6, 0, 0, 0)},
        /* "*\/2" is not a star: OR with the 1st */
        {"0 0 1 * */2", utc(2024, 1, 1, 0, 0, 0), utc(2024, 1, 2, 0, 0, 0)},
        {"0 0 1 * */2", utc(2024, 1, 2, 0, 0, 0), utc(2024, 1, 4, 0, 0, 0)},
        /* "*\/1" is a star: AND, so only the 1st */
        {"0 0 1 * */1", utc(2024, 1, 1, 0, 0, 0), utc(2024, 2, 1, 0, 0, 0)},
        /* 1-31 is not a star: OR, every day */
        {"0 0 1-31 * 1", utc(2024, 1, 2, 0, 0, 0), utc(2024, 1, 3, 0, 0, 0)},
        /* a star anywhere in the list counts */
        {"0 0 1 * *,1", utc(2024, 1, 1, 0, 0, 0), utc(2024, 2, 1, 0, 0, 0)},
        /* Feb 29 OR any Monday of February */
        {"0 0 29 2 MON", utc(2025, 1, 1, 0, 0, 0), utc(2025, 2, 3, 0, 0, 0)},
        {"0 0 29 2 MON", utc(2024, 2, 26, 0, 0, 0), utc(2024, 2, 29, 0, 0, 0)},
        {"0 0 29 2 MON", utc(2024, 2, 29, 0, 0, 0), utc(2025, 2, 3, 0, 0, 0)},
    };
    check_next(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(cron, next_leap_days_and_the_five_year_limit)
{
    const struct next_case cases[] = {
        {"0 0 29 2 *", utc(2023, 1, 1, 0, 0, 0), utc(2024, 2, 29, 0, 0, 0)},
        {"0 0 29 2 *", utc(2024, 3, 1, 0, 0, 0), utc(2028, 2, 29, 0, 0, 0)},
        /* 2100 is not a leap year: from 2097 the next Feb 29 (2104) is past 2097+5 */
        {"0 0 29 2 *", utc(2097, 3, 1, 0, 0, 0), CRON_NONE},
        {"0 0 29 2 *", utc(2098, 3, 1, 0, 0, 0), CRON_NONE},
        {"0 0 29 2 *", utc(2099, 3, 1, 0, 0, 0), utc(2104, 2, 29, 0, 0, 0)},
        /* the limit is counted from the year of after + 1 second */
        {"0 0 1 1 *", utc(2024, 12, 31, 23, 59, 59), utc(2025, 1, 1, 0, 0, 0)},
        /* never: Feb 30, an empty minute list, an impossible day rule */
        {"0 0 30 2 *", utc(2024, 1, 1, 0, 0, 0), CRON_NONE},
        {"0 0 31 4,6,9,11 *", utc(2024, 1, 1, 0, 0, 0), CRON_NONE},
        {", * * * *", utc(2024, 1, 1, 0, 0, 0), CRON_NONE},
        {"0 0 * * ,", utc(2024, 1, 1, 0, 0, 0), CRON_NONE},
        /* 31st skips the short months */
        {"0 0 31 * *", utc(2024, 4, 1, 0, 0, 0), utc(2024, 5, 31, 0, 0, 0)},
        {"0 0 31 * *", utc(2024, 5, 31, 0, 0, 0), utc(2024, 7, 31, 0, 0, 0)},
    };
    check_next(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(cron, next_names_steps_and_sunday)
{
    const struct next_case cases[] = {
        /* April is not in JAN-MAR: next is 2025-01-01, a Wednesday */
        {"30 9 * JAN-MAR mon-FRI", utc(2024, 3, 29, 10, 0, 0), utc(2025, 1, 1, 9, 30, 0)},
        {"30 9 * JAN-MAR mon-FRI", utc(2024, 3, 28, 10, 0, 0), utc(2024, 3, 29, 9, 30, 0)},
        {"10-40/15 * * * *", utc(2024, 1, 15, 12, 10, 0), utc(2024, 1, 15, 12, 25, 0)},
        {"10-40/15 * * * *", utc(2024, 1, 15, 12, 40, 0), utc(2024, 1, 15, 13, 10, 0)},
        {"5/20 * * * *", utc(2024, 1, 15, 12, 45, 0), utc(2024, 1, 15, 13, 5, 0)},
        {"0 22/1 * * *", utc(2024, 1, 15, 22, 0, 0), utc(2024, 1, 15, 23, 0, 0)},
        {"0 22/1 * * *", utc(2024, 1, 15, 23, 0, 0), utc(2024, 1, 16, 22, 0, 0)},
        {"*/15 8-17 * * 1-5", utc(2024, 1, 15, 17, 45, 0), utc(2024, 1, 16, 8, 0, 0)},
        /* Friday 17:45 -> Monday 08:00 */
        {"*/15 8-17 * * 1-5", utc(2024, 1, 19, 17, 45, 0), utc(2024, 1, 22, 8, 0, 0)},
        {"0 12 * * 0", utc(2024, 1, 15, 0, 0, 0), utc(2024, 1, 21, 12, 0, 0)},
        {"0 12 * * SUN", utc(2024, 1, 15, 0, 0, 0), utc(2024, 1, 21, 12, 0, 0)},
        {"0 12 * * sat,sun", utc(2024, 1, 15, 0, 0, 0), utc(2024, 1, 20, 12, 0, 0)},
        {"0 0 * */5 *", utc(2024, 2, 1, 0, 0, 0), utc(2024, 6, 1, 0, 0, 0)},
        {"0 0 * */5 *", utc(2024, 11, 30, 0, 0, 0), utc(2025, 1, 1, 0, 0, 0)},
    };
    check_next(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(cron, next_year_rollover_and_descriptors)
{
    const struct next_case cases[] = {
        {"59 23 31 12 *", utc(2024, 12, 31, 23, 59, 0), utc(2025, 12, 31, 23, 59, 0)},
        {"59 23 31 12 *", utc(2024, 12, 31, 23, 58, 59), utc(2024, 12, 31, 23, 59, 0)},
        {"0 0 1 1 *", utc(2024, 6, 1, 0, 0, 0), utc(2025, 1, 1, 0, 0, 0)},
        {"* * * * *", utc(2024, 12, 31, 23, 59, 0), utc(2025, 1, 1, 0, 0, 0)},
        {"@yearly", utc(2024, 5, 5, 5, 5, 5), utc(2025, 1, 1, 0, 0, 0)},
        {"@annually", utc(2024, 5, 5, 5, 5, 5), utc(2025, 1, 1, 0, 0, 0)},
        {"@monthly", utc(2024, 12, 1, 0, 0, 0), utc(2025, 1, 1, 0, 0, 0)},
        /* 2024-01-15 is a Monday; @weekly is Sunday midnight */
        {"@weekly", utc(2024, 1, 15, 0, 0, 0), utc(2024, 1, 21, 0, 0, 0)},
        {"@daily", utc(2024, 2, 28, 1, 0, 0), utc(2024, 2, 29, 0, 0, 0)},
        {"@midnight", utc(2023, 2, 28, 1, 0, 0), utc(2023, 3, 1, 0, 0, 0)},
        {"@hourly", utc(2024, 1, 15, 12, 0, 0), utc(2024, 1, 15, 13, 0, 0)},
        {"TZ=UTC @hourly", utc(2024, 1, 15, 12, 59, 59), utc(2024, 1, 15, 13, 0, 0)},
    };
    check_next(cases, sizeof(cases) / sizeof(cases[0]));
}

/* ---- previous activation ---- */

Test(cron, prev_is_at_or_before)
{
    const struct next_case cases[] = {
        /* field "after" is "at" here */
        {"0 0 * * *", utc(2024, 1, 15, 0, 0, 0), utc(2024, 1, 15, 0, 0, 0)},
        {"0 0 * * *", utc(2024, 1, 15, 0, 0, 59), utc(2024, 1, 15, 0, 0, 0)},
        {"0 0 * * *", utc(2024, 1, 14, 23, 59, 59), utc(2024, 1, 14, 0, 0, 0)},
        {"0 0 1 1 *", utc(2025, 1, 1, 0, 0, 0), utc(2025, 1, 1, 0, 0, 0)},
        {"0 0 1 1 *", utc(2024, 12, 31, 23, 59, 59), utc(2024, 1, 1, 0, 0, 0)},
        {"59 23 31 12 *", utc(2025, 1, 1, 0, 0, 0), utc(2024, 12, 31, 23, 59, 0)},
        {"0 0 29 2 *", utc(2027, 6, 1, 0, 0, 0), utc(2024, 2, 29, 0, 0, 0)},
        {"0 0 29 2 *", utc(2105, 1, 1, 0, 0, 0), utc(2104, 2, 29, 0, 0, 0)},
        {"0 0 29 2 *", utc(2103, 1, 1, 0, 0, 0), CRON_NONE}, /* 2096 is before 2098 */
        {"0 0 13 * FRI", utc(2024, 1, 14, 0, 0, 0), utc(2024, 1, 13, 0, 0, 0)},
        {"0 0 13 * FRI", utc(2024, 1, 12, 23, 0, 0), utc(2024, 1, 12, 0, 0, 0)},
        {"*/15 8-17 * * 1-5", utc(2024, 1, 22, 7, 59, 0), utc(2024, 1, 19, 17, 45, 0)},
        {"0 0 30 2 *", utc(2024, 1, 1, 0, 0, 0), CRON_NONE},
        {"0 0 * * *", utc(1970, 1, 1, 0, 0, 30), 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cron_schedule s = must_parse(cases[i].expr);
        int64_t got = cron_prev(&s, cases[i].after);
        char a[64], g[64], w[64];
        cr_expect_eq(got, cases[i].want, "%s at %s: got %s want %s", cases[i].expr,
                     show(cases[i].after, a, sizeof(a)), show(got, g, sizeof(g)),
                     show(cases[i].want, w, sizeof(w)));
    }
}

Test(cron, matches_only_whole_activation_minutes)
{
    struct cron_schedule s = must_parse("30 9 * * 1-5");
    cr_assert(cron_matches(&s, utc(2024, 1, 15, 9, 30, 0)));
    cr_assert_not(cron_matches(&s, utc(2024, 1, 15, 9, 30, 1)));
    cr_assert_not(cron_matches(&s, utc(2024, 1, 15, 9, 31, 0)));
    cr_assert_not(cron_matches(&s, utc(2024, 1, 13, 9, 30, 0))); /* Saturday */
}

/* ---- brute-force cross-check ---- */

static bool brute_matches(const struct cron_schedule *s, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    if (tm.tm_sec != 0)
        return false;
    bool dom = (s->dom >> tm.tm_mday) & 1, dow = (s->dow >> tm.tm_wday) & 1;
    bool day = (s->dom_star || s->dow_star) ? dom && dow : dom || dow;
    return ((s->month >> (tm.tm_mon + 1)) & 1) && day && ((s->hour >> tm.tm_hour) & 1) &&
           ((s->minute >> tm.tm_min) & 1);
}

/* First match in (after, after + horizon], day by day then minute by minute. */
static int64_t brute_next(const struct cron_schedule *s, int64_t after, int64_t horizon)
{
    int64_t t = (after / 60) * 60 + 60;
    while (t <= after + horizon) {
        if (brute_matches(s, t))
            return t;
        t += 60;
        /* skip the rest of a day whose date cannot match */
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        if (tm.tm_hour == 0 && tm.tm_min == 0) {
            bool dom = (s->dom >> tm.tm_mday) & 1, dow = (s->dow >> tm.tm_wday) & 1;
            bool day = (s->dom_star || s->dow_star) ? dom && dow : dom || dow;
            while (!(((s->month >> (tm.tm_mon + 1)) & 1) && day) && t <= after + horizon) {
                t += 86400;
                tt = (time_t)t;
                gmtime_r(&tt, &tm);
                dom = (s->dom >> tm.tm_mday) & 1;
                dow = (s->dow >> tm.tm_wday) & 1;
                day = (s->dom_star || s->dow_star) ? dom && dow : dom || dow;
            }
        }
    }
    return CRON_NONE;
}

static int64_t brute_prev(const struct cron_schedule *s, int64_t at, int64_t horizon)
{
    for (int64_t t = (at / 60) * 60; t >= at - horizon; t -= 60) {
        if (brute_matches(s, t))
            return t;
    }
    return CRON_NONE;
}

Test(cron, next_and_prev_agree_with_brute_force, .timeout = 60)
{
    static const char *const exprs[] = {
        "* * * * *",     "0 0 * * *",       "*/7 */5 * * *",     "0 9 * * 1-5",
        "0 0 13 * FRI",  "0 0 1 * */2",     "15 3 29 2 *",       "0 0 31 * *",
        "45 23 * * SUN", "0 12 1,15 * MON", "5/13 1-22/7 * * *", "0 0 * JAN,JUL *",
        "59 23 31 12 *", "0 0 1-7 * 1",     "0 0 ? * 6",         "0 6 3,10-12 * *",
    };
    srand(20240115);
    for (size_t e = 0; e < sizeof(exprs) / sizeof(exprs[0]); e++) {
        struct cron_schedule s;
        char err[256];
        if (cron_parse(exprs[e], &s, err, sizeof(err)) < 0)
            cr_assert_fail("%s: %s", exprs[e], err);
        for (int i = 0; i < 40; i++) {
            /* 2020..2030 */
            int64_t t = utc(2020, 1, 1, 0, 0, 0) +
                        (int64_t)((double)rand() / RAND_MAX * (10 * 365.25 * 86400));
            if (i % 4 == 0)
                t -= t % 60; /* on a minute boundary */
            const int64_t horizon = INT64_C(4) * 366 * 86400;
            int64_t want = brute_next(&s, t, horizon);
            int64_t got = cron_next(&s, t);
            char a[64], g[64], w[64];
            if (want != CRON_NONE)
                cr_expect_eq(got, want, "%s next after %s: got %s want %s", exprs[e],
                             show(t, a, sizeof(a)), show(got, g, sizeof(g)),
                             show(want, w, sizeof(w)));
            want = brute_prev(&s, t, 40 * 86400);
            got = cron_prev(&s, t);
            if (want != CRON_NONE)
                cr_expect_eq(got, want, "%s prev at %s: got %s want %s", exprs[e],
                             show(t, a, sizeof(a)), show(got, g, sizeof(g)),
                             show(want, w, sizeof(w)));
            else
                cr_expect(got == CRON_NONE || got < t - 40 * 86400, "%s prev at %s", exprs[e],
                          show(t, a, sizeof(a)));
        }
    }
}

/* ---- the enabledPeriod window ---- */

struct window_case {
    const char *expr;
    const char *duration;
    int64_t now;
    bool want;
};

static void check_window(const struct window_case *cases, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        struct cron_schedule s = must_parse(cases[i].expr);
        int64_t ns;
        char err[128];
        cr_assert_eq(duration_parse(cases[i].duration, &ns, err, sizeof(err)), 0, "%s", err);
        char a[64];
        cr_expect_eq(cron_window_active(&s, ns, cases[i].now), cases[i].want,
                     "\"%s\" for %s at %s: want %s", cases[i].expr, cases[i].duration,
                     show(cases[i].now, a, sizeof(a)), cases[i].want ? "active" : "inactive");
    }
}

Test(cron, window_matches_kubeelasti_cronutil_tests)
{
    /* the cases of KubeElasti's pkg/cronutil/cronutil_test.go */
    const struct window_case cases[] = {
        {"0 0 * * *", "24h", utc(2024, 1, 15, 12, 0, 0), true},
        {"0 0 * * *", "1h", utc(2024, 1, 15, 12, 0, 0), false},
        {"0 9 * * 1-5", "8h", utc(2024, 1, 15, 14, 0, 0), true},  /* Monday 2 PM */
        {"0 9 * * 1-5", "8h", utc(2024, 1, 15, 18, 0, 0), false}, /* Monday 6 PM */
        {"0 9 * * 1-5", "8h", utc(2024, 1, 13, 14, 0, 0), false}, /* Saturday */
        {"0 14 * * *", "1h", utc(2024, 1, 15, 14, 5, 0), true},
        {"0 0 * * *", "168h", utc(2024, 1, 15, 18, 0, 0), true},
    };
    check_window(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(cron, window_starts_inclusive_and_ends_exclusive)
{
    const struct window_case cases[] = {
        {"0 22 * * *", "12h", utc(2024, 1, 15, 21, 59, 59), false},
        {"0 22 * * *", "12h", utc(2024, 1, 15, 22, 0, 0), true},
        {"0 22 * * *", "12h", utc(2024, 1, 16, 9, 59, 59), true},
        {"0 22 * * *", "12h", utc(2024, 1, 16, 10, 0, 0), false},
        /* sub-second durations: the window ends between whole seconds */
        {"0 0 * * *", "1.5s", utc(2024, 1, 15, 0, 0, 1), true},
        {"0 0 * * *", "1.5s", utc(2024, 1, 15, 0, 0, 2), false},
        {"0 0 * * *", "1ns", utc(2024, 1, 15, 0, 0, 0), true},
        {"0 0 * * *", "1ns", utc(2024, 1, 15, 0, 0, 1), false},
        {"*/5 * * * *", "4m", utc(2024, 1, 15, 12, 3, 59), true},
        {"*/5 * * * *", "4m", utc(2024, 1, 15, 12, 4, 0), false},
        /* weekends: Saturday 00:00 for 48h; 2024-01-20 is a Saturday */
        {"0 0 * * SAT", "48h", utc(2024, 1, 19, 23, 59, 59), false},
        {"0 0 * * SAT", "48h", utc(2024, 1, 20, 0, 0, 0), true},
        {"0 0 * * SAT", "48h", utc(2024, 1, 21, 23, 59, 59), true},
        {"0 0 * * SAT", "48h", utc(2024, 1, 22, 0, 0, 0), false},
        /* a window that crosses the new year */
        {"0 22 31 12 *", "4h", utc(2025, 1, 1, 1, 59, 59), true},
        {"0 22 31 12 *", "4h", utc(2025, 1, 1, 2, 0, 0), false},
    };
    check_window(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(cron, window_longer_than_the_period_is_always_on)
{
    struct cron_schedule every5 = must_parse("*/5 * * * *");
    struct cron_schedule daily = must_parse("0 0 * * *");
    struct cron_schedule weekdays = must_parse("0 9 * * 1-5");
    int64_t base = utc(2024, 1, 15, 0, 0, 0);
    for (int64_t t = base; t < base + 14 * 86400; t += 7 * 60 + 13) {
        cr_expect(cron_window_active(&every5, 5 * DURATION_NS_PER_MIN, t));
        cr_expect(cron_window_active(&daily, 24 * DURATION_NS_PER_HOUR, t));
        cr_expect(cron_window_active(&daily, 30 * 24 * DURATION_NS_PER_HOUR, t));
        /* Friday 09:00 + 72h reaches Monday 09:00 */
        cr_expect(cron_window_active(&weekdays, 72 * DURATION_NS_PER_HOUR, t) ||
                      t < utc(2024, 1, 15, 9, 0, 0),
                  "at %lld", (long long)t);
    }
    /* just short of the gap, the last minute before the next activation is off */
    cr_expect_not(cron_window_active(&daily, 24 * DURATION_NS_PER_HOUR - DURATION_NS_PER_S,
                                     utc(2024, 1, 15, 23, 59, 59)));
}

Test(cron, window_with_month_long_durations)
{
    const struct window_case cases[] = {
        /* Mar 1 + 30 days = Mar 31 00:00 */
        {"@monthly", "720h", utc(2024, 3, 30, 23, 59, 59), true},
        {"@monthly", "720h", utc(2024, 3, 31, 0, 0, 0), false},
        {"0 0 1 1 *", "720h", utc(2024, 1, 30, 23, 59, 59), true},
        {"0 0 1 1 *", "720h", utc(2024, 1, 31, 0, 0, 0), false},
        {"0 0 1 1 *", "720h", utc(2024, 12, 31, 23, 59, 59), false},
        {"0 0 29 2 *", "24h", utc(2024, 2, 29, 12, 0, 0), true},
        {"0 0 29 2 *", "24h", utc(2025, 3, 1, 12, 0, 0), false},
        /* a schedule that never fires is never active */
        {"0 0 30 2 *", "720h", utc(2024, 3, 15, 0, 0, 0), false},
        {", * * * *", "2562047h", utc(2024, 3, 15, 0, 0, 0), false},
        /* very long durations stay cheap: about one step per day searched */
        {"0 0 29 2 *", "2562047h", utc(2024, 1, 1, 0, 0, 0), true},
        {"* * * * *", "2562047h", utc(2024, 1, 1, 0, 0, 30), true},
    };
    check_window(cases, sizeof(cases) / sizeof(cases[0]));
}

Test(cron, window_with_no_positive_duration_is_never_active)
{
    struct cron_schedule s = must_parse("* * * * *");
    cr_assert_not(cron_window_active(&s, 0, utc(2024, 1, 15, 0, 0, 0)));
    cr_assert_not(cron_window_active(&s, -DURATION_NS_PER_HOUR, utc(2024, 1, 15, 0, 0, 0)));
}

Test(cron, enabled_period_applies_kubeelasti_defaults_and_validation)
{
    bool active = false;
    char err[256] = "";
    /* omitted schedule and duration: daily at midnight for 24h, so always on */
    cr_assert_eq(
        cron_enabled_period(NULL, NULL, utc(2024, 1, 15, 23, 59, 59), &active, err, sizeof(err)), 0,
        "%s", err);
    cr_assert(active);
    cr_assert_eq(cron_enabled_period("", "", utc(2024, 1, 15, 0, 0, 0), &active, err, sizeof(err)),
                 0);
    cr_assert(active);
    cr_assert_eq(cron_enabled_period("0 22 * * *", "12h", utc(2024, 1, 15, 12, 0, 0), &active, err,
                                     sizeof(err)),
                 0);
    cr_assert_not(active);
    cr_assert_eq(cron_enabled_period("0 22 * * *", "", utc(2024, 1, 16, 21, 59, 0), &active, err,
                                     sizeof(err)),
                 0);
    cr_assert(active); /* default 24h */

    cr_assert_eq(cron_enabled_period("bad", "1h", 0, &active, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "schedule \"bad\": expected exactly 5 fields (minute hour "
                          "day-of-month month day-of-week), found 1");
    cr_assert_eq(cron_enabled_period("0 0 * * *", "90x", 0, &active, err, sizeof(err)), -1);
    cr_assert_str_eq(err,
                     "duration \"90x\": unknown unit \"x\" (valid units: ns, us, µs, ms, s, m, h)");
    cr_assert_eq(cron_enabled_period("0 0 * * *", "0s", 0, &active, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "duration \"0s\": must be positive");
    cr_assert_eq(cron_enabled_period("0 0 * * *", "-1h", 0, &active, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "duration \"-1h\": must be positive");
    cr_assert_eq(cron_enabled_period("0 0 * * 7", "1h", 0, &active, err, sizeof(err)), -1);
    cr_assert_eq(cron_enabled_period("@every 1h", "1h", 0, &active, err, sizeof(err)), -1);
}
