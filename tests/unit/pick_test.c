/* pick: fewest in flight first, round-robin among equals, failed endpoints skipped, backoff. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "resolver/pick.h"

static struct addr eps[3];
static struct route_port port;
static struct svc_worker sw;

static void setup(void)
{
    const char *text[] = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"};
    char err[128];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(addr_parse(text[i], &eps[i], err, sizeof(err)), 0, "%s", err);
    port = (struct route_port){.endpoints = eps, .n_endpoints = 3};
    sw = (struct svc_worker){0};
}

static void teardown(void)
{
    free(sw.loads);
}

TestSuite(pick, .init = setup, .fini = teardown);

Test(pick, equal_loads_are_taken_round_robin)
{
    cr_assert_eq(pick_endpoint(&sw, &port, NULL, 0), &eps[0]);
    cr_assert_eq(pick_endpoint(&sw, &port, NULL, 0), &eps[1]);
    cr_assert_eq(pick_endpoint(&sw, &port, NULL, 0), &eps[2]);
    cr_assert_eq(pick_endpoint(&sw, &port, NULL, 0), &eps[0]);
}

Test(pick, fewest_in_flight_wins)
{
    pick_load_add(&sw, &eps[0], 1);
    pick_load_add(&sw, &eps[1], 1);
    pick_load_add(&sw, &eps[1], 1);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pick_endpoint(&sw, &port, NULL, 0), &eps[2]);
    pick_load_add(&sw, &eps[2], 1);
    pick_load_add(&sw, &eps[2], 1);
    cr_assert_eq(pick_endpoint(&sw, &port, NULL, 0), &eps[0]);
    cr_assert_eq(pick_inflight(&sw, &eps[1]), 2);
}

Test(pick, loads_go_down_when_let_go)
{
    pick_load_add(&sw, &eps[0], 1);
    pick_load_add(&sw, &eps[0], -1);
    cr_assert_eq(pick_inflight(&sw, &eps[0]), 0);
    pick_load_add(&sw, &eps[2], -1); /* never bound: nothing kept */
    cr_assert_eq(sw.n_loads, 1);
    cr_assert_eq(pick_inflight(&sw, &eps[2]), 0);
}

Test(pick, failed_endpoints_are_skipped_until_all_failed)
{
    struct addr failed[2] = {eps[0], eps[2]};
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pick_endpoint(&sw, &port, failed, 2), &eps[1]);
    struct addr all[3] = {eps[0], eps[1], eps[2]};
    cr_assert_null(pick_endpoint(&sw, &port, all, 3));
    struct route_port none = {0};
    cr_assert_null(pick_endpoint(&sw, &none, NULL, 0));
}

Test(pick, backoff_starts_small_doubles_and_is_capped)
{
    cr_assert_eq(pick_backoff_next(0), 10);
    cr_assert_eq(pick_backoff_next(10), 20);
    cr_assert_eq(pick_backoff_next(320), 500);
    cr_assert_eq(pick_backoff_next(500), 500);
}
