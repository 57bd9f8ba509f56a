/*
 * log: one JSON object per line on stderr ({"ts","level","msg", fields...}).
 *
 * Fields are given as a small format string of space-separated `key=%conv` items, followed by
 * the values, printf style:
 *
 *     log_info("wake command exited", "service=%s status=%d", name, status);
 *
 * Conversions: %s (string, NULL prints null), %d (int), %u (unsigned), %ld, %lu, %lld, %llu,
 * %zu (size_t), %f (double), %b (int printed as true/false). Strings are JSON-escaped, so
 * request data can be logged safely. Each line is written with one write(2), so lines from
 * different threads never interleave. Thread-safe.
 */
#ifndef HOLDFAST_LOG_H
#define HOLDFAST_LOG_H

#include <stdbool.h>

enum log_level {
    LOG_DEBUG,
    LOG_INFO,
    LOG_WARN,
    LOG_ERROR,
};

/* Parses "debug", "info", "warn" or "error". Returns 0, or -1 when the name is unknown. */
int log_parse_level(const char *name, enum log_level *out);

/* Sets the lowest level that is written (default LOG_INFO). */
void log_set_level(enum log_level level);

/* True when a message at `level` would be written: lets callers skip expensive field work. */
bool log_enabled(enum log_level level);

/*
 * The compiler checks each field's value against its conversion, as it checks printf: `fields`
 * is a printf format (" key=" is plain text to it). %b is not a C11 printf conversion: GCC's
 * gnu_printf knows it (an int, as the logger reads it) and warns only that ISO C lacks it,
 * which the __extension__ in the macros below silences. Clang 14 (the fuzz build) rejects %b,
 * so there the attribute is left out: GCC, which builds and tests everything, does the checking.
 */
#if defined(__GNUC__) && !defined(__clang__)
#define LOG_FORMAT_CHECK __attribute__((format(gnu_printf, 3, 4)))
#else
#define LOG_FORMAT_CHECK
#endif

/* Writes one line when `level` is enabled. `fields` may be NULL or "". */
void log_write(enum log_level level, const char *msg, const char *fields, ...) LOG_FORMAT_CHECK;

#define log_debug(...) (__extension__ log_write(LOG_DEBUG, __VA_ARGS__))
#define log_info(...) (__extension__ log_write(LOG_INFO, __VA_ARGS__))
#define log_warn(...) (__extension__ log_write(LOG_WARN, __VA_ARGS__))
#define log_error(...) (__extension__ log_write(LOG_ERROR, __VA_ARGS__))

#endif
