/*
 * clock: the one place that reads the clocks and writes or reads a time as text.
 *
 * Monotonic time (CLOCK_MONOTONIC) measures intervals and deadlines: it never jumps with the
 * wall clock. Wall time (CLOCK_REALTIME) is only for what leaves the process: timestamps in
 * log lines, status fields, Events, Leases and Prometheus query times, all written as RFC 3339
 * UTC ("2026-11-22T14:00:00Z", Kubernetes' Time; with 6 fraction digits its MicroTime).
 * Thread-safe; no state.
 */
#ifndef HOLDFAST_CLOCK_H
#define HOLDFAST_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Monotonic time in nanoseconds / milliseconds since an arbitrary start (boot). */
uint64_t clock_mono_ns(void);
uint64_t clock_mono_ms(void);

/* Wall time: seconds / nanoseconds since the Unix epoch. */
int64_t clock_wall_s(void);
uint64_t clock_wall_ns(void);

/* Bytes that hold any RFC 3339 time clock_rfc3339_format writes (up to year 9999, 9 digits). */
#define CLOCK_RFC3339_MAX 32

/*
 * Writes unix_s (+ nsec) as RFC 3339 UTC with `digits` fraction digits (0, 3, 6 or 9; the
 * fraction is cut, not rounded): 0 gives "2026-11-22T14:00:00Z", 6 "2026-11-22T14:00:00.123456Z".
 * Returns 0, or -1 when len is too small or digits is not one of those (buf then holds no time).
 */
int clock_rfc3339_format(char *buf, size_t len, int64_t unix_s, long nsec, int digits);

/*
 * Reads an RFC 3339 time ("2026-11-22T14:00:00Z", "...:00.123456Z", "...:00+02:00") into Unix
 * seconds: the fraction is dropped, an offset is applied, and a missing zone reads as UTC.
 * What follows the time is not looked at. Returns 0, or -1 (s NULL or not such a time; *unix_s
 * untouched).
 */
int clock_rfc3339_parse(const char *s, int64_t *unix_s);

#endif
