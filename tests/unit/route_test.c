/* route: snapshots derived from one another share what did not change, stay immutable once
 * derived from, compare slot by slot, and find services by name through adds and removals. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "resolver/route.h"

static struct svc_registry reg;

static void setup(void)
{
    svc_registry_init(&reg, 2);
}

static void teardown(void)
{
    svc_registry_destroy(&reg);
}

TestSuite(route, .init = setup, .fini = teardown);

/* A route for default/<name> with one port and `n_endpoints` endpoints. */
static struct route_service *make(const char *name, size_t n_endpoints)
{
    struct route_service *r = route_service_new(svc_registry_get(&reg, "default", name), 1, 1);
    cr_assert_not_null(r);
    r->ports[0].name = strdup("http");
    r->ports[0].endpoints = calloc(n_endpoints ? n_endpoints : 1, sizeof(struct addr));
    r->ports[0].n_endpoints = n_endpoints;
    return r;
}

static const struct route_service *find(const struct route_snapshot *s, const char *name)
{
    return route_snapshot_find(s, "default", 7, name, strlen(name));
}

/* A snapshot with services s0..s<n-1> in slots 0..n-1. */
static struct route_snapshot *filled(size_t n)
{
    struct route_snapshot *s = route_snapshot_derive(NULL);
    cr_assert_not_null(s);
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof(name), "s%zu", i);
        cr_assert_eq(route_snapshot_put(s, i, make(name, 0)), 0);
    }
    return s;
}

Test(route, a_derived_snapshot_shares_every_service_until_one_is_put)
{
    struct route_snapshot *a = filled(1000);
    struct route_snapshot *b = route_snapshot_derive(a);
    cr_assert_eq(b->n_services, 1000);
    for (size_t i = 0; i < 1000; i++)
        cr_assert_eq(route_snapshot_slot(a, i), route_snapshot_slot(b, i));
    struct route_change *ch = NULL;
    cr_assert_eq(route_snapshot_diff(a, b, &ch), 0);
    free(ch);

    const struct route_service *before = route_snapshot_slot(a, 500);
    cr_assert_eq(route_snapshot_put(b, 500, make("s500", 1)), 0);
    /* a is untouched: the chunk was copied, not changed */
    cr_assert_eq(route_snapshot_slot(a, 500), before);
    cr_assert_eq(route_snapshot_slot(a, 500)->ports[0].n_endpoints, 0);
    cr_assert_eq(route_snapshot_slot(b, 500)->ports[0].n_endpoints, 1);
    cr_assert_eq(find(b, "s500"), route_snapshot_slot(b, 500));
    cr_assert_eq(find(a, "s500"), before);
    /* only the chunk of slot 500 differs */
    size_t differ = 0;
    for (size_t c = 0; c < a->slots.n_chunks; c++)
        differ += a->slots.chunks[c] != b->slots.chunks[c];
    cr_assert_eq(differ, 1);
    long n = route_snapshot_diff(a, b, &ch);
    cr_assert_eq(n, 1);
    cr_assert_eq(ch[0].slot, 500);
    cr_assert_eq(ch[0].was, before);
    cr_assert_eq(ch[0].is, route_snapshot_slot(b, 500));
    free(ch);
    route_snapshot_unref(a);
    /* b holds its own references: still whole after a is gone */
    cr_assert_eq(find(b, "s7"), route_snapshot_slot(b, 7));
    route_snapshot_unref(b);
}

Test(route, removed_services_are_not_found_and_their_slots_take_others)
{
    struct route_snapshot *a = filled(100);
    struct route_snapshot *b = route_snapshot_derive(a);
    cr_assert_eq(route_snapshot_put(b, 10, NULL), 0);
    cr_assert_eq(route_snapshot_put(b, 11, NULL), 0);
    cr_assert_null(find(b, "s10"));
    cr_assert_null(find(b, "s11"));
    cr_assert_not_null(find(a, "s10"));
    cr_assert_eq(b->n_services, 98);
    cr_assert_eq(route_snapshot_put(b, 10, make("other", 0)), 0);
    cr_assert_eq(find(b, "other"), route_snapshot_slot(b, 10));
    cr_assert_null(find(b, "s10"));
    cr_assert_eq(b->n_services, 99);
    struct route_change *ch = NULL;
    cr_assert_eq(route_snapshot_diff(a, b, &ch), 2);
    cr_assert_eq(ch[0].slot, 10);
    cr_assert_str_eq(ch[0].was->svc->name, "s10");
    cr_assert_str_eq(ch[0].is->svc->name, "other");
    cr_assert_eq(ch[1].slot, 11);
    cr_assert_null(ch[1].is);
    free(ch);
    /* every service is visited once, in slot order, the emptied slot skipped */
    size_t seen = 0, last = 0;
    const struct route_service *r;
    for (size_t i = 0; (r = route_snapshot_next(b, &i)); i++) {
        cr_assert(seen == 0 || i > last);
        cr_assert_neq(i, 11);
        last = i;
        seen++;
    }
    cr_assert_eq(seen, 99);
    route_snapshot_unref(a);
    route_snapshot_unref(b);
}

Test(route, the_name_index_survives_growth_and_many_removals)
{
    struct route_snapshot *s = route_snapshot_derive(NULL);
    /* far slots, to leave empty chunks between */
    for (size_t i = 0; i < 3000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "s%zu", i);
        cr_assert_eq(route_snapshot_put(s, i * 3, make(name, 0)), 0);
    }
    for (size_t round = 0; round < 3; round++) {
        struct route_snapshot *next = route_snapshot_derive(s);
        for (size_t i = round; i < 3000; i += 3) {
            char name[32];
            snprintf(name, sizeof(name), "s%zu", i);
            cr_assert_eq(route_snapshot_put(next, i * 3, NULL), 0);
            snprintf(name, sizeof(name), "r%zu-%zu", round, i);
            cr_assert_eq(route_snapshot_put(next, i * 3, make(name, 0)), 0);
        }
        route_snapshot_unref(s);
        s = next;
    }
    cr_assert_eq(s->n_services, 3000);
    for (size_t i = 0; i < 3000; i++) {
        char name[32];
        snprintf(name, sizeof(name), "r%zu-%zu", i % 3, i);
        cr_assert_eq(find(s, name), route_snapshot_slot(s, i * 3), "%s", name);
        snprintf(name, sizeof(name), "s%zu", i);
        cr_assert_null(find(s, name), "%s", name);
    }
    route_snapshot_unref(s);
}

Test(route, putting_the_same_route_again_changes_nothing)
{
    struct route_snapshot *a = filled(3);
    struct route_snapshot *b = route_snapshot_derive(a);
    struct route_service *same = (struct route_service *)route_snapshot_slot(a, 1);
    cr_assert_eq(route_snapshot_put(b, 1, route_service_ref(same)), 0);
    struct route_change *ch = NULL;
    cr_assert_eq(route_snapshot_diff(a, b, &ch), 0);
    free(ch);
    route_snapshot_unref(a);
    route_snapshot_unref(b);
}

Test(route, a_service_listener_points_at_its_service)
{
    struct route_service *r = make("web", 0);
    cr_assert_eq(r->listeners[0].service, r);
    cr_assert_eq(r->listeners[0].kind, LISTENER_SERVICE);
    route_service_unref(r);
}
