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

/* Writes one line when `level` is enabled. `fields` may be NULL or "". */
void log_write(enum log_level level, const char *msg, const char *fields, ...);

#define log_debug(...) log_write(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_write(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_write(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

#endif
