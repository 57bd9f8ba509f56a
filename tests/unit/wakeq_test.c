/* wakeq: wakes deduplicated per service until taken; failures always queued; order kept. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>

#include "resolver/route.h"
#include "resolver/wakeq.h"

static struct svc_registry reg;
static struct wakeq q;

static void setup(void)
{
    svc_registry_init(&reg, 2);
    wakeq_init(&q, NULL);
}

static void teardown(void)
{
    wakeq_destroy(&q);
    svc_registry_destroy(&reg);
}

TestSuite(wakeq, .init = setup, .fini = teardown);

static size_t count_msgs(struct wake_msg *m)
{
    size_t n = 0;
    while (m) {
        struct wake_msg *next = m->next;
        n++;
        wake_msg_free(m);
        m = next;
    }
    return n;
}

Test(wakeq, wakes_are_deduplicated_until_taken)
{
    struct svc_state *a = svc_registry_get(&reg, "default", "a");
    struct svc_state *b = svc_registry_get(&reg, "default", "b");
    cr_assert(wakeq_push_wake(&q, a));
    cr_assert_not(wakeq_push_wake(&q, a), "second wake of a queued service is dropped");
    cr_assert(wakeq_push_wake(&q, b));
    struct wake_msg *m = wakeq_take_all(&q);
    cr_assert_eq(m->svc, a, "oldest first");
    cr_assert_eq(m->next->svc, b);
    cr_assert_eq(count_msgs(m), 2);
    cr_assert(wakeq_push_wake(&q, a), "taken: the next wake is queued again");
    cr_assert_eq(count_msgs(wakeq_take_all(&q)), 1);
    svc_state_unref(a);
    svc_state_unref(b);
}

Test(wakeq, failures_carry_the_backend_and_are_not_deduplicated)
{
    struct svc_state *a = svc_registry_get(&reg, "default", "a");
    struct addr be;
    char err[64];
    addr_parse("127.0.1.9:8080", &be, err, sizeof(err));
    wakeq_push_failure(&q, a, &be);
    wakeq_push_failure(&q, a, &be);
    struct wake_msg *m = wakeq_take_all(&q);
    cr_assert_eq(m->kind, WAKE_BACKEND_FAILED);
    cr_assert(addr_equal(&m->backend, &be));
    cr_assert_eq(count_msgs(m), 2);
    svc_state_unref(a);
}

Test(wakeq, registry_returns_the_same_state_for_the_same_name)
{
    struct svc_state *a1 = svc_registry_get(&reg, "ns", "a");
    struct svc_state *a2 = svc_registry_get(&reg, "ns", "a");
    struct svc_state *other = svc_registry_get(&reg, "ns2", "a");
    cr_assert_eq(a1, a2);
    cr_assert_neq(a1, other);
    cr_assert_str_eq(a1->key, "ns/a");
    char labels[SVC_LABELS_MAX];
    svc_state_labels(a1, labels, sizeof(labels));
    cr_assert_str_eq(labels, "namespace=\"ns\",service=\"a\"");
    /* built from the name on each call, escaped as /metrics needs */
    struct svc_state *weird = svc_registry_get(&reg, "ns", "we\"ird\\");
    svc_state_labels(weird, labels, sizeof(labels));
    cr_assert_str_eq(labels, "namespace=\"ns\",service=\"we\\\"ird\\\\\"");
    svc_state_unref(weird);
    svc_state_unref(a1);
    svc_state_unref(a2);
    svc_state_unref(other);
}

/* A service's histograms (the data plane's and the controller's wake_to_scale) exist once
 * something is observed: 10,000 services that never hold a request do not carry four empty
 * ones each. Counted in bytes: the state itself holds none (it is smaller than two). */
Test(wakeq, a_service_has_no_histograms_until_one_is_observed)
{
    cr_expect_lt(sizeof(struct svc_state), 2 * sizeof(struct hist), "svc_state is %zu bytes",
                 sizeof(struct svc_state));
    struct svc_state *s = svc_registry_get(&reg, "ns", "quiet");
    cr_assert_null(svc_state_hists_peek(s), "allocated before any observation");
    struct svc_hists *h = svc_state_hists(s);
    cr_assert_not_null(h);
    hist_observe_ns(&h->hold_seconds, 1000000);
    hist_observe_ns(&h->wake_to_scale_seconds, 2000000);
    cr_assert_eq(svc_state_hists(s), h, "the first one stays");
    cr_assert_eq(svc_state_hists_peek(s), h);
    cr_assert_eq(atomic_load(&svc_state_hists_peek(s)->hold_seconds.sum_ns), 1000000);
    cr_assert_eq(atomic_load(&svc_state_hists_peek(s)->wake_to_scale_seconds.sum_ns), 2000000);
    svc_state_unref(s);
}

struct race {
    struct svc_state *s;
    struct svc_hists *got;
};

static void *first_observer(void *arg)
{
    struct race *r = arg;
    r->got = svc_state_hists(r->s);
    return NULL;
}

/* Workers observe from their own threads: racing first observations publish one set (the
 * loser's is freed: ASan's leak check runs the unit tests). */
Test(wakeq, racing_first_observations_share_one_set_of_histograms)
{
    for (int round = 0; round < 50; round++) {
        struct svc_state *s = svc_registry_get(&reg, "ns", "race");
        struct race r[4];
        pthread_t t[4];
        for (int i = 0; i < 4; i++) {
            r[i] = (struct race){.s = s};
            cr_assert_eq(pthread_create(&t[i], NULL, first_observer, &r[i]), 0);
        }
        for (int i = 0; i < 4; i++)
            pthread_join(t[i], NULL);
        for (int i = 0; i < 4; i++)
            cr_assert_eq(r[i].got, svc_state_hists_peek(s), "thread %d got another set", i);
        svc_state_unref(s);
        svc_registry_destroy(&reg); /* the registry's reference: the state goes, a new one next */
        svc_registry_init(&reg, 2);
    }
}
