/* metrics: histogram buckets and the Prometheus text format. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/metrics.h"

Test(metrics, histogram_buckets_are_cumulative_in_text)
{
    struct hist h;
    memset(&h, 0, sizeof(h));
    hist_observe_ns(&h, 500000);       /* 0.5 ms -> le 0.001 */
    hist_observe_ns(&h, 20000000);     /* 20 ms -> le 0.025 */
    hist_observe_ns(&h, 700000000000); /* 700 s -> +Inf only */
    struct mtext t;
    mtext_init(&t);
    mtext_hist(&t, "x_seconds", "namespace=\"a\",service=\"b\"", &h);
    cr_assert_not_null(
        strstr(t.data, "x_seconds_bucket{namespace=\"a\",service=\"b\",le=\"0.001\"} 1\n"), "%s",
        t.data);
    cr_assert_not_null(strstr(t.data, "le=\"0.01\"} 1\n"), "%s", t.data);
    cr_assert_not_null(strstr(t.data, "le=\"0.025\"} 2\n"), "%s", t.data);
    cr_assert_not_null(strstr(t.data, "le=\"600\"} 2\n"), "%s", t.data);
    cr_assert_not_null(strstr(t.data, "le=\"+Inf\"} 3\n"), "%s", t.data);
    cr_assert_not_null(strstr(t.data, "x_seconds_count{namespace=\"a\",service=\"b\"} 3\n"));
    cr_assert_not_null(strstr(t.data, "x_seconds_sum{namespace=\"a\",service=\"b\"} 700.0205"));
    mtext_free(&t);
}

Test(metrics, label_values_are_escaped)
{
    char labels[256];
    metrics_service_labels(labels, sizeof(labels), "we\"ird", "a\\b\nc");
    cr_assert_str_eq(labels, "namespace=\"we\\\"ird\",service=\"a\\\\b\\nc\"");
}

Test(metrics, family_and_samples)
{
    struct mtext t;
    mtext_init(&t);
    mtext_family(&t, "holdfast_x_total", "counter", "Things.");
    mtext_sample(&t, "holdfast_x_total", NULL, 3);
    mtext_sample(&t, "holdfast_x_total", "a=\"1\"", 4);
    cr_assert_str_eq(t.data, "# HELP holdfast_x_total Things.\n# TYPE holdfast_x_total counter\n"
                             "holdfast_x_total 3\nholdfast_x_total{a=\"1\"} 4\n");
    mtext_free(&t);
}

Test(metrics, text_grows_past_its_first_allocation)
{
    struct mtext t;
    mtext_init(&t);
    for (int i = 0; i < 2000; i++)
        mtext_sample(&t, "holdfast_long_metric_name_total", "namespace=\"n\"", i);
    cr_assert(t.len > 4096 * 4);
    cr_assert_not_null(strstr(t.data, "holdfast_long_metric_name_total{namespace=\"n\"} 1999\n"));
    mtext_free(&t);
}
