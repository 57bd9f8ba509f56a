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

Test(pick, an_endpoint_gets_its_pacing_window_at_its_first_take)
{
    struct pace_window *p = pick_pace(&sw, &eps[1], 8, 1000);
    cr_assert_not_null(p);
    cr_assert_eq(p->limit, 8);
    cr_assert(pace_take(p, 1001));
    cr_assert_eq(pick_pace(&sw, &eps[1], 8, 2000), p, "the same window, not started again");
    cr_assert_eq(p->outstanding, 1);
    cr_assert_eq(pick_pace_find(&sw, &eps[1]), p);
    cr_assert_null(pick_pace_find(&sw, &eps[2]), "found, never added");
}

Test(pick, an_endpoint_that_left_the_route_starts_a_new_window_when_it_is_back)
{
    struct pace_window *p = pick_pace(&sw, &eps[0], 4, 1000);
    for (int i = 0; i < 4; i++)
        cr_assert(pace_take(p, 1001));
    for (int i = 0; i < 4; i++) {
        pace_connected(p);
        pace_finish(p, false, PACE_ANSWERED, 1002);
    }
    cr_assert_eq(p->limit, 8, "grown");
    cr_assert(pace_take(p, 1003));
    struct route_port still = {.endpoints = eps, .n_endpoints = 3};
    struct route_service r = {.ports = &still, .n_ports = 1};
    pick_pace_forget(&sw, &r);
    cr_assert_eq(pick_pace(&sw, &eps[0], 4, 2000)->limit, 8, "still in the route: kept");
    struct route_port gone = {.endpoints = &eps[1], .n_endpoints = 2};
    r.ports = &gone;
    pick_pace_forget(&sw, &r);
    p = pick_pace(&sw, &eps[0], 4, 3000);
    cr_assert_eq(p->limit, 4, "left and came back: a new window");
    cr_assert_eq(p->outstanding, 1, "what is still outstanding to it stays counted");
}
