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
