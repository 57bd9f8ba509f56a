/*
 * duration: Go's time.ParseDuration and Duration.String(). The expected values are Go's own
 * (the cases of Go's time_test.go parseDurationTests/durationTests, plus the ones ElastiService
 * manifests use), so a manifest means the same here as under the Go operator.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/duration.h"

#define NS INT64_C(1)
#define US DURATION_NS_PER_US
#define MS DURATION_NS_PER_MS
#define SEC DURATION_NS_PER_S
#define MIN DURATION_NS_PER_MIN
#define HOUR DURATION_NS_PER_HOUR

struct ok_case {
    const char *text;
    int64_t ns;
};

static const struct ok_case parses[] = {
    {"0", 0},
    {"5s", 5 * SEC},
    {"30s", 30 * SEC},
    {"1478s", 1478 * SEC},
    {"-5s", -5 * SEC},
    {"+5s", 5 * SEC},
    {"-0", 0},
    {"+0", 0},
    {"5.0s", 5 * SEC},
    {"5.6s", 5 * SEC + 600 * MS},
    {"5.s", 5 * SEC},
    {".5s", 500 * MS},
    {"1.0s", 1 * SEC},
    {"1.00s", 1 * SEC},
    {"1.004s", 1 * SEC + 4 * MS},
    {"1.0040s", 1 * SEC + 4 * MS},
    {"100.00100s", 100 * SEC + 1 * MS},
    {"10ns", 10 * NS},
    {"11us", 11 * US},
    {"12\xc2\xb5s", 12 * US}, /* µ U+00B5 */
    {"12\xce\xbcs", 12 * US}, /* μ U+03BC */
    {"13ms", 13 * MS},
    {"14s", 14 * SEC},
    {"15m", 15 * MIN},
    {"16h", 16 * HOUR},
    {"3h30m", 3 * HOUR + 30 * MIN},
    {"10.5s4m", 4 * MIN + 10 * SEC + 500 * MS},
    {"-2m3.4s", -(2 * MIN + 3 * SEC + 400 * MS)},
    {"1h2m3s4ms5us6ns", 1 * HOUR + 2 * MIN + 3 * SEC + 4 * MS + 5 * US + 6 * NS},
    {"39h9m14.425s", 39 * HOUR + 9 * MIN + 14 * SEC + 425 * MS},
    {"52763797000ns", 52763797000 * NS},
    {"0.3333333333333333333h", 20 * MIN},
    {"9007199254740993ns", INT64_C(9007199254740993)},
    {"9223372036854775807ns", INT64_MAX},
    {"9223372036854775.807us", INT64_MAX},
    {"9223372036854ms775us807ns", INT64_MAX},
    {"-9223372036854775808ns", INT64_MIN},
    {"-9223372036854775.808us", INT64_MIN},
    {"-9223372036854ms775us808ns", INT64_MIN},
    {"-2562047h47m16.854775808s", INT64_MIN},
    {"2562047h47m16.854775807s", INT64_MAX},
    {"0.100000000000000000000h", 6 * MIN},
    {"0.830103483285477580700h", 49 * MIN + 48 * SEC + 372539827 * NS},
    /* what ElastiService manifests write */
    {"90s", 90 * SEC},
    {"1h30m", 90 * MIN},
    {"24h", 24 * HOUR},
    {"1.5h", 90 * MIN},
    {"720h", 720 * HOUR},
    {"8h", 8 * HOUR},
    {"0h", 0},
    {"0s", 0},
    {"000s", 0},
};

Test(duration, parses_what_go_parses)
{
    for (size_t i = 0; i < sizeof(parses) / sizeof(parses[0]); i++) {
        int64_t ns = 12345;
        char err[256] = "";
        int rc = duration_parse(parses[i].text, &ns, err, sizeof(err));
        cr_expect_eq(rc, 0, "%s: %s", parses[i].text, err);
        cr_expect_eq(ns, parses[i].ns, "%s: got %lld want %lld", parses[i].text, (long long)ns,
                     (long long)parses[i].ns);
    }
}

struct err_case {
    const char *text;
    const char *message; /* the whole message */
};

static const struct err_case rejects[] = {
    {"", "duration \"\": empty string (expected e.g. \"90s\", \"1h30m\")"},
    {"3", "duration \"3\": missing unit after the number (use ns, us, µs, ms, s, m or h)"},
    {"00", "duration \"00\": missing unit after the number (use ns, us, µs, ms, s, m or h)"},
    {"1.5", "duration \"1.5\": missing unit after the number (use ns, us, µs, ms, s, m or h)"},
    {"1h30", "duration \"1h30\": missing unit after the number (use ns, us, µs, ms, s, m or h)"},
    {"-", "duration \"-\": a sign must be followed by a number and a unit"},
    {"+", "duration \"+\": a sign must be followed by a number and a unit"},
    {"s", "duration \"s\": expected a number at \"s\""},
    {"h1", "duration \"h1\": expected a number at \"h1\""},
    {".", "duration \".\": a number needs digits before or after the point"},
    {"-.", "duration \"-.\": a number needs digits before or after the point"},
    {".s", "duration \".s\": a number needs digits before or after the point"},
    {"+.s", "duration \"+.s\": a number needs digits before or after the point"},
    {"90x", "duration \"90x\": unknown unit \"x\" (valid units: ns, us, µs, ms, s, m, h)"},
    {"1d", "duration \"1d\": unknown unit \"d\" (valid units: ns, us, µs, ms, s, m, h)"},
    {"1H", "duration \"1H\": unknown unit \"H\" (valid units: ns, us, µs, ms, s, m, h)"},
    {"1sec", "duration \"1sec\": unknown unit \"sec\" (valid units: ns, us, µs, ms, s, m, h)"},
    {"1h 30m", "duration \"1h 30m\": unknown unit \"h \" (valid units: ns, us, µs, ms, s, m, h)"},
    {" 1h", "duration \" 1h\": expected a number at \" 1h\""},
    {"1h-30m", "duration \"1h-30m\": unknown unit \"h-\" (valid units: ns, us, µs, ms, s, m, h)"},
    {"\x85\x85", "duration \"\\x85\\x85\": expected a number at \"\\x85\\x85\""},
    {"3\xffs", "duration \"3\\xffs\": unknown unit \"\\xffs\" (valid units: ns, us, µs, ms, s, "
               "m, h)"},
    {"9223372036854775808ns",
     "duration \"9223372036854775808ns\": out of range (the limit is 2562047h47m16.854775807s)"},
    {"9223372036854775810ns",
     "duration \"9223372036854775810ns\": out of range (the limit is 2562047h47m16.854775807s)"},
    {"-9223372036854775809ns",
     "duration \"-9223372036854775809ns\": out of range (the limit is 2562047h47m16.854775807s)"},
    {"9223372036854775.808us", "duration \"9223372036854775.808us\": out of range (the limit is "
                               "2562047h47m16.854775807s)"},
    {"9223372036854ms775us808ns",
     "duration \"9223372036854ms775us808ns\": out of range (the limit is "
     "2562047h47m16.854775807s)"},
    {"2562048h", "duration \"2562048h\": out of range (the limit is 2562047h47m16.854775807s)"},
    {"99999999999999999999s",
     "duration \"99999999999999999999s\": out of range (the limit is 2562047h47m16.854775807s)"},
};

Test(duration, rejects_what_go_rejects_with_a_message)
{
    for (size_t i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) {
        int64_t ns = 777;
        char err[256] = "";
        int rc = duration_parse(rejects[i].text, &ns, err, sizeof(err));
        cr_expect_eq(rc, -1, "%s should be rejected", rejects[i].text);
        cr_expect_eq(ns, 777, "%s: output written on error", rejects[i].text);
        cr_expect_str_eq(err, rejects[i].message);
    }
}

Test(duration, error_message_is_truncated_safely)
{
    int64_t ns;
    char err[12];
    cr_assert_eq(duration_parse("90x", &ns, err, sizeof(err)), -1);
    cr_assert_eq(strlen(err), sizeof(err) - 1);
    cr_assert_eq(duration_parse("90x", &ns, NULL, 0), -1);
    cr_assert_eq(duration_parse(NULL, &ns, NULL, 0), -1);
}

static const struct ok_case formats[] = {
    {"0s", 0},
    {"1ns", 1 * NS},
    {"1.1\xc2\xb5s", 1100 * NS},
    {"2.2ms", 2200 * US},
    {"3.3s", 3300 * MS},
    {"4m5s", 4 * MIN + 5 * SEC},
    {"4m5.001s", 4 * MIN + 5001 * MS},
    {"5h6m7.001s", 5 * HOUR + 6 * MIN + 7001 * MS},
    {"8m0.000000001s", 8 * MIN + 1 * NS},
    {"2562047h47m16.854775807s", INT64_MAX},
    {"-2562047h47m16.854775808s", INT64_MIN},
    {"1h0m0s", 1 * HOUR},
    {"24h0m0s", 24 * HOUR},
    {"1h30m0s", 90 * MIN},
    {"1m30s", 90 * SEC},
    {"-1.5s", -1500 * MS},
    {"-1ns", -1},
    {"999ns", 999},
    {"1\xc2\xb5s", 1000},
    {"999.999999ms", 999999999},
    {"1s", 1 * SEC},
};

Test(duration, formats_like_go)
{
    for (size_t i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        char buf[DURATION_TEXT_MAX];
        size_t n = duration_format(formats[i].ns, buf, sizeof(buf));
        cr_expect_str_eq(buf, formats[i].text);
        cr_expect_eq(n, strlen(formats[i].text));
    }
}

Test(duration, format_truncates_and_reports_full_length)
{
    char buf[4];
    cr_assert_eq(duration_format(90 * MIN, buf, sizeof(buf)), strlen("1h30m0s"));
    cr_assert_str_eq(buf, "1h3");
    cr_assert_eq(duration_format(90 * MIN, NULL, 0), strlen("1h30m0s"));
}

Test(duration, format_then_parse_round_trips)
{
    static const int64_t values[] = {
        0,         1,         999,       1000,      1500000,          SEC, 61 * SEC, HOUR - 1,
        25 * HOUR, INT64_MAX, INT64_MIN, -HOUR - 1, 7 * 24 * HOUR + 3};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char buf[DURATION_TEXT_MAX], err[128];
        int64_t back;
        duration_format(values[i], buf, sizeof(buf));
        cr_expect_eq(duration_parse(buf, &back, err, sizeof(err)), 0, "%s: %s", buf, err);
        cr_expect_eq(back, values[i], "%s", buf);
    }
}
