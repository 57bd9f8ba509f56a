/*
 * duration: Go duration strings ("90s", "1h30m", "1.5h", "-250ms") to int64 nanoseconds and
 * back, with exactly the answers of Go's time.ParseDuration and time.Duration.String(), because
 * ElastiService fields such as enabledPeriod.duration are written for a Go operator.
 *
 * Grammar (as Go): [-+]? ( [0-9]* ( "." [0-9]* )? unit )+ , or "0" alone (optionally signed),
 * with unit one of ns, us, µs (U+00B5), μs (U+03BC), ms, s, m, h. Each number needs digits
 * before or after the point; no spaces anywhere; the total must fit in an int64 of nanoseconds
 * (-2562047h47m16.854775808s .. 2562047h47m16.854775807s). Fractions are converted the way Go
 * converts them (through a float64), so "1.000000001h" gives the same nanoseconds as Go.
 */
#ifndef HOLDFAST_DURATION_H
#define HOLDFAST_DURATION_H

#include <stddef.h>
#include <stdint.h>

#define DURATION_NS_PER_US INT64_C(1000)
#define DURATION_NS_PER_MS INT64_C(1000000)
#define DURATION_NS_PER_S INT64_C(1000000000)
#define DURATION_NS_PER_MIN (60 * DURATION_NS_PER_S)
#define DURATION_NS_PER_HOUR (60 * DURATION_NS_PER_MIN)

/* Room for the longest duration_format() output ("-2562047h47m16.854775808s") and its NUL. */
#define DURATION_TEXT_MAX 32

/*
 * Parses `text` into *out_ns. Returns 0, or -1 with a message that quotes the input and says
 * what is wrong, e.g. `duration "90x": unknown unit "x" (valid units: ns, us, µs, ms, s, m, h)`,
 * written into err (truncated to errlen; err may be NULL when errlen is 0). *out_ns is only
 * written on success.
 */
int duration_parse(const char *text, int64_t *out_ns, char *err, size_t errlen);

/*
 * Writes `ns` as Go's Duration.String() does ("1h30m0s", "1.5s", "250ms", "1µs", "0s") into buf
 * (NUL-terminated, truncated to buflen). Returns the length of the full text, as snprintf does;
 * a buffer of DURATION_TEXT_MAX bytes always suffices.
 */
size_t duration_format(int64_t ns, char *buf, size_t buflen);

#endif
