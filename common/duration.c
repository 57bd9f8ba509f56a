/*
 * duration: Go's time.ParseDuration and Duration.String() in C. The parser follows Go's
 * algorithm step by step, including its unsigned 64-bit accumulation and the float64 used for
 * fractions, so that every accepted string gives the same nanoseconds and every rejected
 * string is rejected here too.
 */
#include "common/duration.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define MAX_ABS (UINT64_C(1) << 63) /* |INT64_MIN|: the largest magnitude Go lets through */

struct unit {
    const char *name;
    uint64_t ns;
};

static const struct unit units[] = {
    {"ns", 1},
    {"us", 1000},
    {"\xc2\xb5s", 1000}, /* U+00B5 MICRO SIGN */
    {"\xce\xbcs", 1000}, /* U+03BC GREEK SMALL LETTER MU */
    {"ms", 1000000},
    {"s", 1000000000},
    {"m", UINT64_C(60) * 1000000000},
    {"h", UINT64_C(3600) * 1000000000},
};

/*
 * Quotes at most `len` bytes of `s` the way Go's time package quotes them in its errors:
 * control and non-ASCII bytes as \xNN, '"' and '\\' escaped. Output is truncated to fit.
 */
static void quote(char *out, size_t outlen, const char *s, size_t len)
{
    size_t w = 0;
    if (outlen == 0)
        return;
    for (size_t i = 0; i < len && w + 5 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c >= 0x80) {
            w += (size_t)snprintf(out + w, outlen - w, "\\x%02x", c);
        } else {
            if (c == '"' || c == '\\')
                out[w++] = '\\';
            out[w++] = (char)c;
        }
    }
    out[w] = '\0';
}

static int fail(char *err, size_t errlen, const char *text, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, const char *text, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return -1;
    char q[160];
    quote(q, sizeof(q), text, strlen(text));
    int n = snprintf(err, errlen, "duration \"%s\": ", q);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Go's leadingInt: [0-9]* into *x; false on overflow past 1<<63. */
static bool leading_int(const char **s, uint64_t *x)
{
    *x = 0;
    while (**s >= '0' && **s <= '9') {
        if (*x > MAX_ABS / 10)
            return false;
        *x = *x * 10 + (uint64_t)(**s - '0');
        if (*x > MAX_ABS)
            return false;
        (*s)++;
    }
    return true;
}

/* Go's leadingFraction: [0-9]* into *x and *scale, dropping digits past int64 precision. */
static void leading_fraction(const char **s, uint64_t *x, double *scale)
{
    bool overflow = false;
    *x = 0;
    *scale = 1;
    for (; **s >= '0' && **s <= '9'; (*s)++) {
        if (overflow)
            continue;
        if (*x > (MAX_ABS - 1) / 10) {
            overflow = true;
            continue;
        }
        uint64_t y = *x * 10 + (uint64_t)(**s - '0');
        if (y > MAX_ABS) {
            overflow = true;
            continue;
        }
        *x = y;
        *scale *= 10;
    }
}

int duration_parse(const char *text, int64_t *out_ns, char *err, size_t errlen)
{
    if (text == NULL)
        text = "";
    const char *s = text;
    uint64_t d = 0;
    bool neg = false;

    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    if (strcmp(s, "0") == 0) {
        *out_ns = 0;
        return 0;
    }
    if (*s == '\0')
        return fail(err, errlen, text, "%s",
                    *text ? "a sign must be followed by a number and a unit"
                          : "empty string (expected e.g. \"90s\", \"1h30m\")");

    while (*s != '\0') {
        uint64_t v, f = 0;
        double scale = 1;

        if (!(*s == '.' || (*s >= '0' && *s <= '9'))) {
            char q[64];
            quote(q, sizeof(q), s, strlen(s));
            return fail(err, errlen, text, "expected a number at \"%s\"", q);
        }
        const char *before = s;
        if (!leading_int(&s, &v))
            return fail(err, errlen, text, "out of range (the limit is 2562047h47m16.854775807s)");
        bool pre = s != before;
        bool post = false;
        if (*s == '.') {
            s++;
            const char *frac = s;
            leading_fraction(&s, &f, &scale);
            post = s != frac;
        }
        if (!pre && !post)
            return fail(err, errlen, text, "a number needs digits before or after the point");

        size_t ulen = 0;
        while (s[ulen] != '\0' && s[ulen] != '.' && !(s[ulen] >= '0' && s[ulen] <= '9'))
            ulen++;
        if (ulen == 0)
            return fail(err, errlen, text,
                        "missing unit after the number (use ns, us, µs, ms, s, m or h)");
        const struct unit *u = NULL;
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (strlen(units[i].name) == ulen && memcmp(units[i].name, s, ulen) == 0) {
                u = &units[i];
                break;
            }
        }
        if (u == NULL) {
            char q[64];
            quote(q, sizeof(q), s, ulen);
            return fail(err, errlen, text,
                        "unknown unit \"%s\" (valid units: ns, us, µs, ms, s, m, h)", q);
        }
        s += ulen;

        if (v > MAX_ABS / u->ns)
            return fail(err, errlen, text, "out of range (the limit is 2562047h47m16.854775807s)");
        v *= u->ns;
        if (f > 0) {
            /* As Go: float64 keeps fractions of an hour nanosecond-accurate; the product is
             * below one unit, so the conversion cannot overflow. */
            v += (uint64_t)((double)f * ((double)u->ns / scale));
            if (v > MAX_ABS)
                return fail(err, errlen, text,
                            "out of range (the limit is 2562047h47m16.854775807s)");
        }
        d += v; /* unsigned wrap-around exactly as Go's uint64 */
        if (d > MAX_ABS)
            return fail(err, errlen, text, "out of range (the limit is 2562047h47m16.854775807s)");
    }
    if (neg) {
        *out_ns = (int64_t)(0 - d); /* two's complement: -(1<<63) is INT64_MIN */
        return 0;
    }
    if (d > MAX_ABS - 1)
        return fail(err, errlen, text, "out of range (the limit is 2562047h47m16.854775807s)");
    *out_ns = (int64_t)d;
    return 0;
}

/* Go's fmtFrac: v/10^prec's fraction, trailing zeros (and a bare point) omitted. */
static size_t fmt_frac(char *buf, size_t w, uint64_t *v, int prec)
{
    bool print = false;
    for (int i = 0; i < prec; i++) {
        unsigned digit = (unsigned)(*v % 10);
        print = print || digit != 0;
        if (print)
            buf[--w] = (char)('0' + digit);
        *v /= 10;
    }
    if (print)
        buf[--w] = '.';
    return w;
}

static size_t fmt_int(char *buf, size_t w, uint64_t v)
{
    if (v == 0)
        buf[--w] = '0';
    while (v > 0) {
        buf[--w] = (char)('0' + v % 10);
        v /= 10;
    }
    return w;
}

size_t duration_format(int64_t ns, char *buf, size_t buflen)
{
    char tmp[DURATION_TEXT_MAX];
    size_t w = sizeof(tmp) - 1;
    tmp[w] = '\0';
    bool neg = ns < 0;
    uint64_t u = neg ? 0 - (uint64_t)ns : (uint64_t)ns;

    if (u < (uint64_t)DURATION_NS_PER_S) {
        int prec = 0;
        tmp[--w] = 's';
        if (u == 0) {
            tmp[--w] = '0';
        } else {
            if (u < (uint64_t)DURATION_NS_PER_US) {
                tmp[--w] = 'n';
            } else if (u < (uint64_t)DURATION_NS_PER_MS) {
                prec = 3;
                tmp[--w] = '\xb5'; /* U+00B5 'µ', as Go prints it */
                tmp[--w] = '\xc2';
            } else {
                prec = 6;
                tmp[--w] = 'm';
            }
            w = fmt_frac(tmp, w, &u, prec);
            w = fmt_int(tmp, w, u);
        }
    } else {
        tmp[--w] = 's';
        w = fmt_frac(tmp, w, &u, 9);
        w = fmt_int(tmp, w, u % 60);
        u /= 60;
        if (u > 0) {
            tmp[--w] = 'm';
            w = fmt_int(tmp, w, u % 60);
            u /= 60;
            if (u > 0) {
                tmp[--w] = 'h';
                w = fmt_int(tmp, w, u);
            }
        }
    }
    if (neg)
        tmp[--w] = '-';

    size_t len = sizeof(tmp) - 1 - w;
    if (buflen > 0) {
        size_t n = len < buflen - 1 ? len : buflen - 1;
        memcpy(buf, tmp + w, n);
        buf[n] = '\0';
    }
    return len;
}
