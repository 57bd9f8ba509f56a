/*
 * metrics: lock-free counters and histograms, and the Prometheus text exposition format.
 *
 * Values are updated with relaxed atomics from any thread and read by the admin endpoint.
 * Labels are only ever the service's namespace and name (bounded), never request data.
 */
#ifndef HOLDFAST_METRICS_H
#define HOLDFAST_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Upper bounds (seconds) of the histogram buckets, shared by every histogram. */
#define HIST_NBUCKETS 16
extern const double hist_bounds[HIST_NBUCKETS];

struct hist {
    _Atomic uint64_t buckets[HIST_NBUCKETS]; /* non-cumulative count per bucket */
    _Atomic uint64_t inf;                    /* observations above the last bound */
    _Atomic uint64_t sum_ns;                 /* sum of observations, nanoseconds */
};

void hist_observe_ns(struct hist *h, uint64_t ns);

static inline void counter_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

static inline uint64_t counter_get(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* A growable text buffer the exposition is written into. */
struct mtext {
    char *data; /* NUL-terminated; owned, free with mtext_free */
    size_t len;
    size_t cap;
};

void mtext_init(struct mtext *t);
void mtext_free(struct mtext *t);
void mtext_printf(struct mtext *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "# HELP name help\n# TYPE name type\n" */
void mtext_family(struct mtext *t, const char *name, const char *type, const char *help);

/*
 * One sample line. `labels` is the already-built label set without braces (for example
 * `namespace="a",service="b"`), or NULL/"" for none.
 */
void mtext_sample(struct mtext *t, const char *name, const char *labels, double value);

/* The _bucket, _sum and _count lines of one histogram. */
void mtext_hist(struct mtext *t, const char *name, const char *labels, const struct hist *h);

/* Writes `namespace="ns",service="name"` with label-value escaping into buf. */
void metrics_service_labels(char *buf, size_t buflen, const char *ns, const char *name);

#endif
