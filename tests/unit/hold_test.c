/* hold: held connections and bytes never pass the service's or the process's limit, a refusal
 * takes nothing and names the limit, and what is given back can be taken again. */
#include <criterion/criterion.h>

#include "resolver/hold.h"

static struct svc_registry reg;
static struct svc_state *svc;
static struct route_service r;
static struct dataplane dp;

static void setup(void)
{
    svc_registry_init(&reg, 1);
    svc = svc_registry_get(&reg, "default", "a");
    r = (struct route_service){.max_held_connections = 2, .max_held_bytes = 100};
    dp = (struct dataplane){0};
    dp.limits.max_held_connections = 3;
    dp.limits.max_held_bytes = 150;
}

static void teardown(void)
{
    svc_state_unref(svc);
    svc_registry_destroy(&reg);
}

TestSuite(hold, .init = setup, .fini = teardown);

Test(hold, take_never_passes_the_limit)
{
    _Atomic long ctr = 8;
    cr_assert_eq(hold_take(&ctr, 10, 5), 2);
    cr_assert_eq(atomic_load(&ctr), 10);
    cr_assert_eq(hold_take(&ctr, 10, 1), 0);
    cr_assert_eq(atomic_load(&ctr), 10);
}

Test(hold, service_connection_limit_refuses_and_takes_nothing)
{
    cr_assert_null(hold_admit(svc, &r, &dp, 10));
    cr_assert_null(hold_admit(svc, &r, &dp, 10));
    cr_assert_str_eq(hold_admit(svc, &r, &dp, 10), "hold queue of the service is full");
    cr_assert_eq(atomic_load(&svc->held_conns), 2);
    cr_assert_eq(atomic_load(&dp.held_conns), 2);
    cr_assert_eq(atomic_load(&svc->held_bytes), 20);
    cr_assert_eq(atomic_load(&dp.held_bytes), 20);
}

Test(hold, resolver_connection_limit_gives_back_the_service_slot)
{
    atomic_store(&dp.held_conns, 3);
    cr_assert_str_eq(hold_admit(svc, &r, &dp, 0), "hold queue of the resolver is full");
    cr_assert_eq(atomic_load(&svc->held_conns), 0);
}

Test(hold, byte_limits_are_all_or_nothing_on_admit)
{
    cr_assert_str_eq(hold_admit(svc, &r, &dp, 101), "held bytes of the service at the limit");
    cr_assert_eq(atomic_load(&svc->held_conns), 0);
    cr_assert_eq(atomic_load(&svc->held_bytes), 0);
    cr_assert_eq(atomic_load(&dp.held_bytes), 0);
    atomic_store(&dp.held_bytes, 100);
    cr_assert_str_eq(hold_admit(svc, &r, &dp, 60), "held bytes of the resolver at the limit");
    cr_assert_eq(atomic_load(&svc->held_bytes), 0);
    cr_assert_eq(atomic_load(&dp.held_bytes), 100);
    cr_assert_eq(atomic_load(&dp.held_conns), 0);
}

Test(hold, reserve_takes_what_both_limits_allow)
{
    atomic_store(&dp.held_bytes, 120);
    cr_assert_eq(hold_reserve(svc, &r, &dp, 50, false), 30);
    cr_assert_eq(atomic_load(&svc->held_bytes), 30);
    cr_assert_eq(atomic_load(&dp.held_bytes), 150);
    cr_assert_eq(hold_reserve(svc, &r, &dp, 10, true), 0);
    cr_assert_eq(atomic_load(&svc->held_bytes), 30);
    cr_assert_eq(hold_reserve(svc, NULL, &dp, 10, false), 0); /* a removed service: nothing */
}

Test(hold, given_back_can_be_taken_again)
{
    cr_assert_null(hold_admit(svc, &r, &dp, 100));
    cr_assert_str_eq(hold_admit(svc, &r, &dp, 1), "held bytes of the service at the limit");
    hold_give_back(svc, &dp, 1, 100);
    cr_assert_eq(atomic_load(&svc->held_conns), 0);
    cr_assert_eq(atomic_load(&dp.held_bytes), 0);
    cr_assert_null(hold_admit(svc, &r, &dp, 100));
}

/* The queue's order, as arrival times. */
static size_t order(struct hold_q *q, uint64_t *out, size_t max)
{
    size_t n = 0;
    struct hold_entry *e;
    TAILQ_FOREACH(e, q, link)
    {
        if (n < max)
            out[n] = e->arrived_ns;
        n++;
    }
    return n;
}

Test(hold, queue_is_oldest_arrival_first_and_a_comeback_keeps_its_place)
{
    struct hold_q q;
    TAILQ_INIT(&q);
    struct hold_entry e[4] = {
        {.arrived_ns = 10}, {.arrived_ns = 30}, {.arrived_ns = 20}, {.arrived_ns = 40}};
    hold_enqueue(&q, &e[0]);
    hold_enqueue(&q, &e[1]);
    hold_enqueue(&q, &e[3]);
    hold_enqueue(&q, &e[2]); /* came back after failed connects: before the later arrivals */
    hold_enqueue(&q, &e[2]); /* already queued: no-op */
    uint64_t got[8];
    cr_assert_eq(order(&q, got, 8), 4);
    cr_assert_arr_eq(got, ((uint64_t[]){10, 20, 30, 40}), 4 * sizeof(uint64_t));
    hold_dequeue(&q, &e[0]);
    hold_dequeue(&q, &e[0]); /* not queued: no-op */
    cr_assert_not(e[0].queued);
    cr_assert_eq(order(&q, got, 8), 3);
    cr_assert_eq(got[0], 20);
    hold_enqueue(&q, &e[0]); /* the oldest goes first again */
    cr_assert_eq(order(&q, got, 8), 4);
    cr_assert_eq(got[0], 10);
}
