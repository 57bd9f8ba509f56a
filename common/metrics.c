/*
 * metrics: see metrics.h. Prometheus text format 0.0.4.
 */
#include "common/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double hist_bounds[HIST_NBUCKETS] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                           1,     2.5,   5,    10,    30,   60,  300,  600};

void hist_observe_ns(struct hist *h, uint64_t ns)
{
    double s = (double)ns / 1e9;
    size_t i = 0;
    while (i < HIST_NBUCKETS && s > hist_bounds[i])
        i++;
    if (i < HIST_NBUCKETS)
        counter_add(&h->buckets[i], 1);
    else
        counter_add(&h->inf, 1);
    counter_add(&h->sum_ns, ns);
}

void mtext_init(struct mtext *t)
{
    t->cap = 4096;
    t->len = 0;
    t->data = malloc(t->cap);
    if (t->data)
        t->data[0] = '\0';
    else
        t->cap = 0;
}

void mtext_free(struct mtext *t)
{
    free(t->data);
    t->data = NULL;
    t->len = t->cap = 0;
}

void mtext_printf(struct mtext *t, const char *fmt, ...)
{
    if (!t->data)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = t->cap * 2 + (size_t)n;
        char *p = realloc(t->data, cap);
        if (!p)
            return; /* keeps what fitted; the scrape is incomplete rather than the process dead */
        t->data = p;
        t->cap = cap;
    }
}

void mtext_family(struct mtext *t, const char *name, const char *type, const char *help)
{
    mtext_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void mtext_sample(struct mtext *t, const char *name, const char *labels, double value)
{
    if (labels && *labels)
        mtext_printf(t, "%s{%s} %.17g\n", name, labels, value);
    else
        mtext_printf(t, "%s %.17g\n", name, value);
}

void mtext_hist(struct mtext *t, const char *name, const char *labels, const struct hist *h)
{
    uint64_t cum = 0;
    const char *sep = (labels && *labels) ? "," : "";
    const char *lab = labels ? labels : "";
    struct hist *hm = (struct hist *)h; /* counters are only read */
    for (size_t i = 0; i < HIST_NBUCKETS; i++) {
        cum += counter_get(&hm->buckets[i]);
        mtext_printf(t, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, lab, sep, hist_bounds[i],
                     (unsigned long long)cum);
    }
    cum += counter_get(&hm->inf);
    mtext_printf(t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, lab, sep, (unsigned long long)cum);
    if (*lab) {
        mtext_printf(t, "%s_sum{%s} %.9f\n", name, lab, (double)counter_get(&hm->sum_ns) / 1e9);
        mtext_printf(t, "%s_count{%s} %llu\n", name, lab, (unsigned long long)cum);
    } else {
        mtext_printf(t, "%s_sum %.9f\n", name, (double)counter_get(&hm->sum_ns) / 1e9);
        mtext_printf(t, "%s_count %llu\n", name, (unsigned long long)cum);
    }
}

/* Escapes a label value: backslash, double quote and newline, as the text format requires. */
static size_t escape_label(char *out, size_t outlen, const char *v)
{
    size_t n = 0;
    for (; *v && n + 3 < outlen; v++) {
        if (*v == '\\' || *v == '"') {
            out[n++] = '\\';
            out[n++] = *v;
        } else if (*v == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *v;
        }
    }
    out[n] = '\0';
    return n;
}

void metrics_service_labels(char *buf, size_t buflen, const char *ns, const char *name)
{
    char ens[256], ename[256];
    escape_label(ens, sizeof(ens), ns);
    escape_label(ename, sizeof(ename), name);
    snprintf(buf, buflen, "namespace=\"%s\",service=\"%s\"", ens, ename);
}
