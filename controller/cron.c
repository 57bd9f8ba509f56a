/*
 * cron: parsing follows robfig/cron v3's Parser.Parse with ParseStandard's options
 * (Minute|Hour|Dom|Month|Dow|Descriptor) branch by branch, so the same strings are accepted
 * and mean the same bit sets. Evaluation does not copy robfig's one-unit-at-a-time Next(): it
 * walks a calendar cursor field by field (month, day, hour, minute), forwards for cron_next and
 * backwards for cron_prev and the window check, which finds the same earliest (or latest)
 * matching minute with at most a few steps per day searched.
 */
#include "controller/cron.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/duration.h"

#define STAR_BIT (UINT64_C(1) << 63) /* robfig's starBit, only while parsing */

/* Inputs outside years 1..9999 are refused rather than risk overflow in the arithmetic. */
#define MIN_UNIX INT64_C(-62135596800)
#define MAX_UNIX INT64_C(253402300799)

struct bounds {
    const char *field;        /* name used in messages */
    unsigned min, max;        /* allowed values */
    const char *const *names; /* three-letter names for min..max, or NULL */
};

static const char *const month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                          "jul", "aug", "sep", "oct", "nov", "dec"};
static const char *const dow_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

static const struct bounds minutes_b = {"minute", 0, 59, NULL};
static const struct bounds hours_b = {"hour", 0, 23, NULL};
static const struct bounds dom_b = {"day-of-month", 1, 31, NULL};
static const struct bounds months_b = {"month", 1, 12, month_names};
static const struct bounds dow_b = {"day-of-week", 0, 6, dow_names};

/*
 * Time zone names that Go's time.LoadLocation resolves to UTC itself or to a tzdata zone that
 * is UTC under another name (offset 0, no DST). "" is UTC in LoadLocation too.
 */
static const char *const utc_zones[] = {
    "",          "UTC",           "Etc/UTC",   "UCT",       "Etc/UCT",
    "GMT",       "Etc/GMT",       "GMT0",      "Etc/GMT0",  "GMT+0",
    "Etc/GMT+0", "GMT-0",         "Etc/GMT-0", "Greenwich", "Etc/Greenwich",
    "Universal", "Etc/Universal", "Zulu",      "Etc/Zulu",
};

struct parse_ctx {
    const char *expr; /* the whole schedule, for messages */
    char *err;
    size_t errlen;
};

/* The schedule as robfig's SpecSchedule would hold it, star bits included. */
struct spec_bits {
    uint64_t minute, hour, dom, month, dow;
};

static int fail(const struct parse_ctx *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int fail(const struct parse_ctx *c, const char *fmt, ...)
{
    if (c->err == NULL || c->errlen == 0)
        return -1;
    char q[128];
    size_t w = 0;
    for (const char *p = c->expr; *p && w + 5 < sizeof(q); p++) {
        unsigned char ch = (unsigned char)*p;
        if (ch < 0x20 || ch == 0x7f)
            w += (size_t)snprintf(q + w, sizeof(q) - w, "\\x%02x", ch);
        else if (ch == '"' || ch == '\\')
            w += (size_t)snprintf(q + w, sizeof(q) - w, "\\%c", ch);
        else
            q[w++] = (char)ch;
    }
    q[w] = '\0';
    int n = snprintf(c->err, c->errlen, "schedule \"%s\": ", q);
    if (n >= 0 && (size_t)n < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/*
 * Length in bytes of the white-space character at p, 0 if none: Go's unicode.IsSpace, which
 * strings.Fields and strings.TrimSpace use (ASCII \t \n \v \f \r space, U+0085, U+00A0, U+1680,
 * U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000).
 */
static size_t space_len(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    if (u[0] == ' ' || (u[0] >= '\t' && u[0] <= '\r'))
        return 1;
    if (u[0] == 0xc2 && (u[1] == 0x85 || u[1] == 0xa0))
        return 2;
    if (u[0] == 0xe1 && u[1] == 0x9a && u[2] == 0x80)
        return 3;
    if (u[0] == 0xe2 && u[1] == 0x80 &&
        ((u[2] >= 0x80 && u[2] <= 0x8a) || u[2] == 0xa8 || u[2] == 0xa9 || u[2] == 0xaf))
        return 3;
    if (u[0] == 0xe2 && u[1] == 0x81 && u[2] == 0x9f)
        return 3;
    if (u[0] == 0xe3 && u[1] == 0x80 && u[2] == 0x80)
        return 3;
    return 0;
}

/* Go's strconv.Atoi for 64-bit int: [+-]?[0-9]+ within int64. */
static bool atoi_go(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (len > 0 && (s[0] == '+' || s[0] == '-')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == len)
        return false;
    uint64_t v = 0;
    uint64_t limit = neg ? UINT64_C(1) << 63 : (UINT64_C(1) << 63) - 1;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned digit = (unsigned)(s[i] - '0');
        if (v > (limit - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

/* robfig's mustParseInt: a non-negative int (`what` says where, for the message). */
static int parse_uint(const struct parse_ctx *c, const struct bounds *b, const char *what,
                      const char *s, size_t len, uint64_t *out)
{
    int64_t v;
    if (!atoi_go(s, len, &v))
        return fail(c, "%s: \"%.*s\" is not %s", b->field, (int)len, s, what);
    if (v < 0)
        return fail(c, "%s: negative number %lld not allowed", b->field, (long long)v);
    *out = (uint64_t)v;
    return 0;
}

/* robfig's parseIntOrName: the field's names, any case, before numbers. */
static int parse_int_or_name(const struct parse_ctx *c, const struct bounds *b, const char *s,
                             size_t len, uint64_t *out)
{
    if (b->names != NULL && len == 3) {
        for (unsigned i = 0; i <= b->max - b->min; i++) {
            const char *n = b->names[i];
            size_t k = 0;
            while (k < 3 && (s[k] | 0x20) == n[k]) /* ASCII case folding */
                k++;
            if (k == 3) {
                *out = b->min + i;
                return 0;
            }
        }
    }
    return parse_uint(c, b, b->names ? "a number or a three-letter name" : "a number", s, len, out);
}

static uint64_t get_bits(uint64_t min, uint64_t max, uint64_t step)
{
    uint64_t bits = 0;
    for (uint64_t i = min; i <= max; i += step)
        bits |= UINT64_C(1) << i;
    return bits;
}

/* robfig's getRange: one list item, `*`, `?`, `a`, `a-b`, each optionally `/step`. */
static int get_range(const struct parse_ctx *c, const struct bounds *b, const char *s, size_t len,
                     uint64_t *bits)
{
    size_t nslash = 0, slash = len;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '/') {
            if (nslash++ == 0)
                slash = i;
        }
    }
    /* lowAndHigh = strings.Split(rangeAndStep[0], "-") */
    const char *lo = s;
    size_t lo_len = slash;
    size_t nhyphen = 0, hyphen = slash;
    for (size_t i = 0; i < slash; i++) {
        if (s[i] == '-' && nhyphen++ == 0)
            hyphen = i;
    }
    size_t first_len = hyphen;
    bool single = nhyphen == 0;
    uint64_t start, end, step, extra = 0;

    if (first_len == 1 && (lo[0] == '*' || lo[0] == '?')) {
        /* robfig ignores anything after "*-" or "?-": the whole range it is */
        start = b->min;
        end = b->max;
        extra = STAR_BIT;
    } else {
        if (parse_int_or_name(c, b, lo, first_len, &start) < 0)
            return -1;
        if (nhyphen == 0) {
            end = start;
        } else if (nhyphen == 1) {
            if (parse_int_or_name(c, b, lo + hyphen + 1, lo_len - hyphen - 1, &end) < 0)
                return -1;
        } else {
            return fail(c, "%s: too many hyphens in \"%.*s\"", b->field, (int)len, s);
        }
    }

    if (nslash == 0) {
        step = 1;
    } else if (nslash == 1) {
        if (parse_uint(c, b, "a step number", s + slash + 1, len - slash - 1, &step) < 0)
            return -1;
        if (single)
            end = b->max; /* "a/n" means "a-max/n" */
        if (step > 1)
            extra = 0; /* "*\/2" is a restriction, not a star */
    } else {
        return fail(c, "%s: too many slashes in \"%.*s\"", b->field, (int)len, s);
    }

    if (start < b->min)
        return fail(c, "%s: %llu is below the minimum %u", b->field, (unsigned long long)start,
                    b->min);
    if (end > b->max)
        return fail(c, "%s: %llu is above the maximum %u%s", b->field, (unsigned long long)end,
                    b->max, b == &dow_b ? " (Sunday is 0)" : "");
    if (start > end)
        return fail(c, "%s: range \"%.*s\" runs backwards (%llu > %llu); ranges do not wrap",
                    b->field, (int)len, s, (unsigned long long)start, (unsigned long long)end);
    if (step == 0)
        return fail(c, "%s: step must be a positive number in \"%.*s\"", b->field, (int)len, s);

    *bits = get_bits(start, end, step) | extra;
    return 0;
}

/* robfig's getField: a comma list of ranges; empty items are skipped (strings.FieldsFunc). */
static int get_field(const struct parse_ctx *c, const struct bounds *b, const char *s, size_t len,
                     uint64_t *bits)
{
    *bits = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ',')
            j++;
        if (j > i) {
            uint64_t r = 0;
            if (get_range(c, b, s + i, j - i, &r) < 0)
                return -1;
            *bits |= r;
        }
        i = j + 1;
    }
    return 0;
}

static uint64_t all_bits(const struct bounds *b)
{
    return get_bits(b->min, b->max, 1) | STAR_BIT;
}

static bool text_is(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && memcmp(s, word, len) == 0;
}

/* robfig's parseDescriptor: the exact text, nothing before or after. */
static int parse_descriptor(const struct parse_ctx *c, const char *d, size_t len,
                            struct spec_bits *sb)
{
    sb->minute = 1;
    sb->hour = 1;
    sb->dom = all_bits(&dom_b);
    sb->month = all_bits(&months_b);
    sb->dow = all_bits(&dow_b);
    if (text_is(d, len, "@yearly") || text_is(d, len, "@annually")) {
        sb->dom = 1u << 1;
        sb->month = 1u << 1;
    } else if (text_is(d, len, "@monthly")) {
        sb->dom = 1u << 1;
    } else if (text_is(d, len, "@weekly")) {
        sb->dow = 1;
    } else if (text_is(d, len, "@daily") || text_is(d, len, "@midnight")) {
        /* the defaults above */
    } else if (text_is(d, len, "@hourly")) {
        sb->hour = all_bits(&hours_b);
    } else if (len >= 7 && memcmp(d, "@every ", 7) == 0) {
        char dur[128], derr[192];
        int64_t ns;
        snprintf(dur, sizeof(dur), "%.*s", (int)(len - 7), d + 7);
        if (duration_parse(dur, &ns, derr, sizeof(derr)) < 0)
            return fail(c, "%s", derr);
        return fail(c, "@every is not supported: its activations count from whenever the "
                       "schedule is asked, so a window has no fixed start; write a 5-field "
                       "schedule such as \"0 */2 * * *\"");
    } else {
        return fail(c, "unrecognized descriptor (use @yearly, @annually, @monthly, @weekly, "
                       "@daily, @midnight or @hourly)");
    }
    return 0;
}

/* Length of the white space that ends at `end` (one character), 0 if none. */
static size_t space_len_before(const char *begin, const char *end)
{
    for (size_t back = 1; back <= 3 && back <= (size_t)(end - begin); back++) {
        if (space_len(end - back) == back)
            return back;
    }
    return 0;
}

int cron_parse(const char *expr, struct cron_schedule *out, char *err, size_t errlen)
{
    struct parse_ctx c = {expr ? expr : "", err, errlen};
    const char *spec = c.expr;
    const char *end = spec + strlen(spec);

    if (spec == end)
        return fail(&c, "empty schedule");

    if (strncmp(spec, "TZ=", 3) == 0 || strncmp(spec, "CRON_TZ=", 8) == 0) {
        /* robfig: the zone runs from the first '=' to the first ' ' */
        const char *sp = strchr(spec, ' ');
        const char *eq = strchr(spec, '=');
        if (sp == NULL)
            return fail(&c, "a TZ= or CRON_TZ= prefix must be followed by a space and the "
                            "schedule");
        size_t zlen = (size_t)(sp - eq - 1);
        bool utc = false;
        for (size_t i = 0; i < sizeof(utc_zones) / sizeof(utc_zones[0]); i++)
            utc = utc || text_is(eq + 1, zlen, utc_zones[i]);
        if (!utc)
            return fail(&c,
                        "time zone \"%.*s\" is not supported: holdfast evaluates schedules in "
                        "UTC only (use TZ=UTC or no prefix)",
                        (int)zlen, eq + 1);
        /* then strings.TrimSpace of the rest */
        spec = sp;
        size_t n;
        while ((n = space_len(spec)) > 0)
            spec += n;
        while (end > spec && (n = space_len_before(spec, end)) > 0)
            end -= n;
    }

    struct spec_bits sb;
    if (spec < end && spec[0] == '@') {
        if (parse_descriptor(&c, spec, (size_t)(end - spec), &sb) < 0)
            return -1;
    } else {
        /* strings.Fields */
        const char *fs[5];
        size_t fl[5];
        size_t nf = 0;
        const char *p = spec;
        while (p < end) {
            size_t n;
            while (p < end && (n = space_len(p)) > 0)
                p += n;
            if (p == end)
                break;
            const char *q = p;
            while (q < end && space_len(q) == 0)
                q++;
            if (nf < 5) {
                fs[nf] = p;
                fl[nf] = (size_t)(q - p);
            }
            nf++;
            p = q;
        }
        if (nf != 5)
            return fail(&c,
                        "expected exactly 5 fields (minute hour day-of-month month "
                        "day-of-week), found %zu",
                        nf);
        if (get_field(&c, &minutes_b, fs[0], fl[0], &sb.minute) < 0 ||
            get_field(&c, &hours_b, fs[1], fl[1], &sb.hour) < 0 ||
            get_field(&c, &dom_b, fs[2], fl[2], &sb.dom) < 0 ||
            get_field(&c, &months_b, fs[3], fl[3], &sb.month) < 0 ||
            get_field(&c, &dow_b, fs[4], fl[4], &sb.dow) < 0)
            return -1;
    }

    out->minute = sb.minute & ~STAR_BIT;
    out->hour = (uint32_t)(sb.hour & 0xffffffu);
    out->dom = (uint32_t)(sb.dom & 0xfffffffeu);
    out->month = (uint16_t)(sb.month & 0x1ffeu);
    out->dow = (uint8_t)(sb.dow & 0x7fu);
    out->dom_star = (sb.dom & STAR_BIT) != 0;
    out->dow_star = (sb.dow & STAR_BIT) != 0;
    return 0;
}

/* ---- calendar (proleptic Gregorian, UTC) ---- */

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* Days since 1970-01-01 of y-m-d (H. Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const int dim[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dim[m - 1];
}

/* A position on the calendar, one minute wide. */
struct cursor {
    int64_t y;
    int mo, d, h, mi;
};

static struct cursor cursor_at(int64_t t)
{
    struct cursor c;
    int64_t days = floor_div(t, 86400);
    int64_t secs = t - days * 86400;
    civil_from_days(days, &c.y, &c.mo, &c.d);
    c.h = (int)(secs / 3600);
    c.mi = (int)(secs % 3600 / 60);
    return c;
}

static int64_t cursor_day(const struct cursor *c)
{
    return days_from_civil(c->y, c->mo, c->d);
}

static int64_t cursor_time(const struct cursor *c)
{
    return cursor_day(c) * 86400 + c->h * 3600 + c->mi * 60;
}

static bool day_matches(const struct cron_schedule *s, const struct cursor *c)
{
    int64_t days = cursor_day(c);
    int wd = (int)(((days % 7) + 7 + 4) % 7); /* 1970-01-01 was a Thursday */
    bool dom = (s->dom >> c->d) & 1;
    bool dow = (s->dow >> wd) & 1;
    if (s->dom_star || s->dow_star)
        return dom && dow;
    return dom || dow;
}

/* Smallest set bit >= from (up to max), or -1. */
static int next_bit(uint64_t bits, int from, int max)
{
    for (int v = from; v <= max; v++) {
        if ((bits >> v) & 1)
            return v;
    }
    return -1;
}

/* Largest set bit <= from, or -1. */
static int prev_bit(uint64_t bits, int from)
{
    for (int v = from; v >= 0; v--) {
        if ((bits >> v) & 1)
            return v;
    }
    return -1;
}

static void next_month(struct cursor *c)
{
    c->d = 1;
    c->h = 0;
    c->mi = 0;
    if (++c->mo > 12) {
        c->mo = 1;
        c->y++;
    }
}

static void next_day(struct cursor *c)
{
    c->h = 0;
    c->mi = 0;
    if (++c->d > days_in_month(c->y, c->mo))
        next_month(c);
}

static void prev_month_end(struct cursor *c)
{
    if (--c->mo < 1) {
        c->mo = 12;
        c->y--;
    }
    c->d = days_in_month(c->y, c->mo);
    c->h = 23;
    c->mi = 59;
}

static void prev_day_end(struct cursor *c)
{
    if (--c->d < 1) {
        prev_month_end(c);
        return;
    }
    c->h = 23;
    c->mi = 59;
}

/* Earliest activation at or after the minute-aligned t, in a year <= max_year. */
static int64_t search_forward(const struct cron_schedule *s, int64_t t, int64_t max_year)
{
    struct cursor c = cursor_at(t);
    for (;;) {
        if (c.y > max_year)
            return CRON_NONE;
        if (!((s->month >> c.mo) & 1)) {
            next_month(&c);
            continue;
        }
        if (!day_matches(s, &c)) {
            next_day(&c);
            continue;
        }
        int h = next_bit(s->hour, c.h, 23);
        if (h < 0) {
            next_day(&c);
            continue;
        }
        if (h != c.h) {
            c.h = h;
            c.mi = 0;
        }
        int m = next_bit(s->minute, c.mi, 59);
        if (m < 0) {
            if (c.h == 23) {
                next_day(&c);
            } else {
                c.h++;
                c.mi = 0;
            }
            continue;
        }
        c.mi = m;
        return cursor_time(&c);
    }
}

/* Latest activation at or before the minute-aligned t and at or after lo. */
static int64_t search_backward(const struct cron_schedule *s, int64_t t, int64_t lo)
{
    struct cursor c = cursor_at(t);
    for (;;) {
        if (cursor_time(&c) < lo)
            return CRON_NONE;
        if (!((s->month >> c.mo) & 1)) {
            prev_month_end(&c);
            continue;
        }
        if (!day_matches(s, &c)) {
            prev_day_end(&c);
            continue;
        }
        int h = prev_bit(s->hour, c.h);
        if (h < 0) {
            prev_day_end(&c);
            continue;
        }
        if (h != c.h) {
            c.h = h;
            c.mi = 59;
        }
        int m = prev_bit(s->minute, c.mi);
        if (m < 0) {
            if (c.h == 0) {
                prev_day_end(&c);
            } else {
                c.h--;
                c.mi = 59;
            }
            continue;
        }
        c.mi = m;
        int64_t r = cursor_time(&c);
        return r >= lo ? r : CRON_NONE;
    }
}

bool cron_matches(const struct cron_schedule *s, int64_t t)
{
    if (t < MIN_UNIX || t > MAX_UNIX || floor_div(t, 60) * 60 != t)
        return false;
    struct cursor c = cursor_at(t);
    return ((s->month >> c.mo) & 1) && day_matches(s, &c) && ((s->hour >> c.h) & 1) &&
           ((s->minute >> c.mi) & 1);
}

int64_t cron_next(const struct cron_schedule *s, int64_t after)
{
    if (after < MIN_UNIX || after > MAX_UNIX)
        return CRON_NONE;
    /* robfig starts at after+1s and gives up past the end of that year + 5 */
    int64_t max_year = cursor_at(after + 1).y + 5;
    return search_forward(s, floor_div(after, 60) * 60 + 60, max_year);
}

int64_t cron_prev(const struct cron_schedule *s, int64_t at)
{
    if (at < MIN_UNIX || at > MAX_UNIX)
        return CRON_NONE;
    int64_t lo = days_from_civil(cursor_at(at).y - 5, 1, 1) * 86400;
    return search_backward(s, floor_div(at, 60) * 60, lo);
}

bool cron_window_active(const struct cron_schedule *s, int64_t duration_ns, int64_t now)
{
    if (duration_ns <= 0 || now < MIN_UNIX || now > MAX_UNIX)
        return false;
    /* t + duration > now, with t in whole seconds: t > now - duration exactly */
    int64_t whole = duration_ns / DURATION_NS_PER_S;
    int64_t lo = now - whole + (duration_ns % DURATION_NS_PER_S == 0 ? 1 : 0);
    return search_backward(s, floor_div(now, 60) * 60, lo) != CRON_NONE;
}

int cron_enabled_period(const char *schedule, const char *duration, int64_t now, bool *active,
                        char *err, size_t errlen)
{
    const char *sched = schedule && *schedule ? schedule : "0 0 * * *";
    const char *dur = duration && *duration ? duration : "24h";
    int64_t ns;
    if (duration_parse(dur, &ns, err, errlen) < 0)
        return -1;
    if (ns <= 0) {
        if (err && errlen)
            snprintf(err, errlen, "duration \"%s\": must be positive", dur);
        return -1;
    }
    struct cron_schedule cs;
    if (cron_parse(sched, &cs, err, errlen) < 0)
        return -1;
    *active = cron_window_active(&cs, ns, now);
    return 0;
}
