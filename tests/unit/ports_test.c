/* ports: the resolver port allocator: order round the range, ports kept by name, reuse after
 * release, exhaustion, and two ElastiServices never sharing a port. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "controller/ports.h"

static void named(struct port_map *m, size_t n, const char *const *names)
{
    memset(m, 0, n * sizeof(*m));
    for (size_t i = 0; i < n; i++) {
        snprintf(m[i].name, sizeof(m[i].name), "%s", names[i]);
        snprintf(m[i].protocol, sizeof(m[i].protocol), "TCP");
        m[i].port = 80 + (unsigned)i;
    }
}

static const char *const HTTP_GRPC[] = {"http", "grpc"};

Test(ports, allocates_in_order_from_the_start_of_the_range)
{
    struct ports p;
    cr_assert_eq(ports_init(&p, 20000, 20009), 0);
    struct port_map m[2];
    named(m, 2, HTTP_GRPC);
    char err[128];
    cr_assert_eq(ports_allocate(&p, m, 2, NULL, 0, err, sizeof(err)), 0);
    cr_assert_eq(m[0].resolver_port, 20000);
    cr_assert_eq(m[1].resolver_port, 20001);
    ports_free(&p);
}

Test(ports, two_elastiservices_never_share_a_port)
{
    struct ports p;
    cr_assert_eq(ports_init(&p, 20000, 20003), 0);
    struct port_map a[2], b[2];
    char err[128];
    named(a, 2, HTTP_GRPC);
    named(b, 2, HTTP_GRPC);
    cr_assert_eq(ports_allocate(&p, a, 2, NULL, 0, err, sizeof(err)), 0);
    ports_hold(&p, a, 2, 1);
    /* the cursor goes back to the start: the held ports are skipped, not the free ones */
    p.cursor = 0;
    cr_assert_eq(ports_allocate(&p, b, 2, NULL, 0, err, sizeof(err)), 0);
    for (size_t i = 0; i < 2; i++)
        for (size_t k = 0; k < 2; k++)
            cr_assert_neq(a[i].resolver_port, b[k].resolver_port);
    cr_assert_eq(b[0].resolver_port, 20002);
    cr_assert_eq(b[1].resolver_port, 20003);
    ports_free(&p);
}

Test(ports, keeps_a_ports_resolver_port_by_name)
{
    struct ports p;
    cr_assert_eq(ports_init(&p, 20000, 20009), 0);
    struct port_map have[2], want[3];
    char err[128];
    named(have, 2, HTTP_GRPC);
    cr_assert_eq(ports_allocate(&p, have, 2, NULL, 0, err, sizeof(err)), 0);
    ports_hold(&p, have, 2, 1);
    static const char *const renamed[] = {"grpc", "admin", "http"};
    named(want, 3, renamed);
    cr_assert_eq(ports_allocate(&p, want, 3, have, 2, err, sizeof(err)), 0);
    cr_assert_eq(want[0].resolver_port, have[1].resolver_port);
    cr_assert_eq(want[2].resolver_port, have[0].resolver_port);
    cr_assert_eq(want[1].resolver_port, 20002, "a new name gets a free port");
    ports_free(&p);
}

Test(ports, a_released_port_is_the_last_handed_out_again)
{
    struct ports p;
    cr_assert_eq(ports_init(&p, 20000, 20002), 0);
    static const char *const one[] = {"http"};
    struct port_map a[1], b[1], c[1], d[1];
    char err[128];
    named(a, 1, one);
    cr_assert_eq(ports_allocate(&p, a, 1, NULL, 0, err, sizeof(err)), 0);
    ports_hold(&p, a, 1, 1);
    ports_hold(&p, a, 1, -1); /* a is deleted: 20000 is free again */
    named(b, 1, one);
    cr_assert_eq(ports_allocate(&p, b, 1, NULL, 0, err, sizeof(err)), 0);
    cr_assert_eq(b[0].resolver_port, 20001, "the search resumes after the last one");
    ports_hold(&p, b, 1, 1);
    named(c, 1, one);
    cr_assert_eq(ports_allocate(&p, c, 1, NULL, 0, err, sizeof(err)), 0);
    cr_assert_eq(c[0].resolver_port, 20002);
    ports_hold(&p, c, 1, 1);
    named(d, 1, one);
    cr_assert_eq(ports_allocate(&p, d, 1, NULL, 0, err, sizeof(err)), 0);
    cr_assert_eq(d[0].resolver_port, 20000, "round the range to the released port");
    ports_free(&p);
}

Test(ports, a_full_range_is_refused_with_its_bounds)
{
    struct ports p;
    cr_assert_eq(ports_init(&p, 20000, 20001), 0);
    struct port_map a[2], b[1];
    char err[128] = "";
    named(a, 2, HTTP_GRPC);
    cr_assert_eq(ports_allocate(&p, a, 2, NULL, 0, err, sizeof(err)), 0);
    ports_hold(&p, a, 2, 1);
    named(b, 1, HTTP_GRPC);
    cr_assert_eq(ports_allocate(&p, b, 1, NULL, 0, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "no free resolver port in 20000-20001");
    /* one ElastiService needing more ports than the range has */
    struct ports q;
    cr_assert_eq(ports_init(&q, 30000, 30000), 0);
    named(a, 2, HTTP_GRPC);
    cr_assert_eq(ports_allocate(&q, a, 2, NULL, 0, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "no free resolver port in 30000-30000");
    ports_free(&q);
    ports_free(&p);
}

Test(ports, holding_counts_each_holder)
{
    struct ports p;
    cr_assert_eq(ports_init(&p, 20000, 20000), 0);
    struct port_map m[1] = {{.name = "http", .resolver_port = 20000}};
    ports_hold(&p, m, 1, 1);
    ports_hold(&p, m, 1, 1); /* two status.ports read from the cluster name it */
    ports_hold(&p, m, 1, -1);
    struct port_map b[1];
    char err[128];
    named(b, 1, HTTP_GRPC);
    cr_assert_eq(ports_allocate(&p, b, 1, NULL, 0, err, sizeof(err)), -1,
                 "still held by the other");
    ports_hold(&p, m, 1, -1);
    ports_hold(&p, m, 1, -1); /* never below 0 */
    cr_assert_eq(ports_allocate(&p, b, 1, NULL, 0, err, sizeof(err)), 0);
    struct port_map odd[2] = {{.resolver_port = 0}, {.resolver_port = 70000}};
    ports_hold(&p, odd, 2, 1); /* left out, no out-of-bounds count */
    ports_free(&p);
}
