/*
 * cron: the 5-field schedules of ElastiService.spec.enabledPeriod, evaluated in UTC, with the
 * same answers as robfig/cron v3's cron.ParseStandard() + Schedule.Next() for the same
 * schedule and instant, and the window check KubeElasti v0.1.30 applies to them.
 *
 * Syntax (robfig v3 ParseStandard; evidence: robfig/cron parser.go getRange/parseDescriptor,
 * spec.go bounds and dayMatches):
 *   minute hour day-of-month month day-of-week, separated by any Unicode white space.
 *   minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-6 or
 *   SUN-SAT (0 is Sunday; 7 is REJECTED, as robfig's dow bounds are 0-6). Names are the
 *   three-letter English ones, any case. Each field is a comma list (empty items are skipped,
 *   as Go's strings.FieldsFunc does) of: `*` or `?` (the whole range), `a`, `a-b`, and any of
 *   those followed by `/n` (n >= 1; `a/n` means `a-max/n`; `*-b` is the same as `*`, a robfig
 *   quirk kept). Numbers may carry a leading '+' (Go's strconv.Atoi accepts it). Ranges do not
 *   wrap (`FRI-MON` is an error).
 *   Descriptors: @yearly @annually @monthly @weekly @daily @midnight @hourly (exact spelling,
 *   lower case, nothing after them). `@every <duration>` is parsed by robfig but REJECTED here:
 *   its activations are counted from whenever Next() is called, so it has no fixed times a
 *   window can start at.
 *   Prefix `TZ=<zone> ` or `CRON_TZ=<zone> `: accepted only for zones that are UTC under
 *   another name (UTC, Etc/UTC, GMT, Etc/GMT, Zulu, Universal, UCT, GMT0, ... and the empty
 *   zone, which Go's time.LoadLocation also reads as UTC); any other zone is rejected with a
 *   message, because holdfast evaluates schedules in UTC only.
 *
 * Day rule (robfig's "star bit"): if day-of-month or day-of-week was written with `*` or `?`
 * (including `*`/1 but not `*`/2 or 1-31), a day must match BOTH fields; if neither was, a day
 * matches when EITHER does ("0 0 13 * FRI" is every 13th and every Friday).
 *
 * KubeElasti v0.1.30 (evidence: KubeElasti pkg/cronutil/cronutil.go IsInEnabledPeriodAt,
 * pkg/scaling/scale_handler.go calculateScaleDirection and isInEnabledPeriod):
 *   - parser: cron.NewParser(Minute|Hour|Dom|Month|Dow) - like ParseStandard but WITHOUT
 *     descriptors; holdfast accepts the descriptors (ParseStandard) as a deliberate superset.
 *   - window: the most recent activation t in (now - duration - 24h, now] is found by stepping
 *     Next() from now - duration - 24h; enabled iff now < t + duration. So the window is
 *     [t, t + duration): start inclusive, end exclusive, and a duration longer than the gap
 *     between activations keeps it always on. cron_window_active() gives that answer without
 *     stepping (it searches backwards field by field, bounded by now - duration).
 *   - defaults: empty schedule -> "0 0 * * *", empty duration -> "24h"; a duration that does
 *     not parse or is <= 0 is an error (cronutil.ValidateDuration).
 *   - on any error (bad schedule or bad duration) the v0.1.30 code logs "Failed to check
 *     enabled period, preventing scale-down" and returns ScaleUp, i.e. it fails CLOSED, while
 *     its documentation says an invalid cron "defaults to enabled (fail-open)". holdfast follows
 *     the documentation (issue 4): cron_enabled_period() returns -1 with a message and the
 *     caller logs a warning and treats the period as enabled.
 *
 * Time is int64 Unix seconds, UTC, proleptic Gregorian; activations are whole minutes.
 * Instants outside years 1-9999 give CRON_NONE / false. KubeElasti's stepping also inherits
 * Next()'s five-year give-up, which can only matter for durations of years; holdfast does not
 * copy that.
 */
#ifndef HOLDFAST_CRON_H
#define HOLDFAST_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* "No activation": returned by cron_next()/cron_prev() instead of a time. */
#define CRON_NONE INT64_MIN

/* The schedule as bit sets, one bit per allowed value (bit n = value n). */
struct cron_schedule {
    uint64_t minute; /* bits 0-59 */
    uint32_t hour;   /* bits 0-23 */
    uint32_t dom;    /* bits 1-31, day of month */
    uint16_t month;  /* bits 1-12 */
    uint8_t dow;     /* bits 0-6, day of week, 0 = Sunday */
    bool dom_star;   /* day-of-month written with * or ? (robfig's star bit) */
    bool dow_star;   /* day-of-week written with * or ? */
};

/*
 * Parses `expr` into *out. Returns 0, or -1 with a message naming the schedule and the fault,
 * e.g. `schedule "0 0 * * 7": day-of-week: 7 is above the maximum 6 (Sunday is 0)`, in err
 * (truncated to errlen). *out is only written on success.
 */
int cron_parse(const char *expr, struct cron_schedule *out, char *err, size_t errlen);

/* True when `t` is a whole minute the schedule activates at. */
bool cron_matches(const struct cron_schedule *s, int64_t t);

/*
 * The first activation strictly after `after`, as robfig's Next(): a whole minute, and
 * CRON_NONE when there is none up to the end of the year five years after `after`'s
 * (e.g. "0 0 30 2 *"; or "0 0 29 2 *" after 2097-03-01, whose next Feb 29 is in 2104).
 */
int64_t cron_next(const struct cron_schedule *s, int64_t after);

/*
 * The last activation at or before `at`, CRON_NONE when there is none back to the start of
 * the year five years before `at`'s (the mirror of cron_next's limit).
 */
int64_t cron_prev(const struct cron_schedule *s, int64_t at);

/*
 * The enabledPeriod window: true when some activation t satisfies t <= now < t + duration_ns
 * (KubeElasti's rule, see above). duration_ns <= 0 is never active. The search never looks
 * further back than now - duration_ns, so it costs at most a few steps per day of duration.
 */
bool cron_window_active(const struct cron_schedule *s, int64_t duration_ns, int64_t now);

/*
 * KubeElasti's isInEnabledPeriod for the raw spec strings: NULL or "" schedule means
 * "0 0 * * *", NULL or "" duration means "24h". Returns 0 with *active set, or -1 with a
 * message (bad schedule, bad duration, duration <= 0) in err; the caller decides what an
 * invalid period means (holdfast: log a warning, treat as enabled).
 */
int cron_enabled_period(const char *schedule, const char *duration, int64_t now, bool *active,
                        char *err, size_t errlen);

#endif
