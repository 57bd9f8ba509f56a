/*
 * dataplane: the face the control planes use. Publishing opens the listeners new routes name
 * (synchronously: they accept when it returns), reports and leaves out the ones that cannot be
 * opened, and closes a listener once no published route names it. Only dataplane.h is used,
 * as a control plane would (the workers are not started: no worker holds a socket).
 */
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "resolver/dataplane.h"

static struct dataplane *dp;

static void setup(void)
{
    struct dp_limits limits;
    dp_limits_default(&limits);
    dp = dataplane_new(1, &limits);
    cr_assert_not_null(dp);
}

static void teardown(void)
{
    dataplane_free(dp);
}

TestSuite(dataplane, .init = setup, .fini = teardown);

/* A loopback address no one listens on now (bound to port 0, then let go). */
static struct addr free_addr(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    close(fd);
    char text[64], err[128];
    snprintf(text, sizeof(text), "127.0.0.1:%u", ntohs(sin.sin_port));
    struct addr a;
    cr_assert_eq(addr_parse(text, &a, err, sizeof(err)), 0);
    return a;
}

static bool accepts(const struct addr *a)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bool ok = connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0;
    close(fd);
    return ok;
}

/* A route for default/<name> with one port and a listener on each of addrs. */
static struct route_service *route(const char *name, const struct addr *addrs, size_t n)
{
    struct route_service *r = route_service_new(dataplane_service(dp, "default", name), 1, n);
    cr_assert_not_null(r);
    cr_assert_eq(route_service_set_port(r, 0, "http", PROTO_HTTP, 80, NULL, 0), 0);
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(route_service_add_listener(r, 0, &addrs[i]), 0);
    cr_assert_eq(route_service_add_listener(r, 0, &addrs[0]), -1, "room for n listeners only");
    return r;
}

/* Publishes s and returns how many listeners could not be opened (their errors in *out, or
 * freed when out is NULL). */
static size_t publish(struct route_snapshot *s, struct dataplane_listen_error **out)
{
    struct dataplane_listen_error *errs;
    size_t n;
    dataplane_publish(dp, s, 0, &errs, &n);
    if (out)
        *out = errs;
    else
        dataplane_listen_errors_free(errs, n);
    return n;
}

Test(dataplane, publish_opens_new_listeners_before_it_returns)
{
    struct addr a = free_addr();
    cr_assert(!accepts(&a));
    struct route_snapshot *s = route_snapshot_derive(NULL);
    cr_assert_eq(route_snapshot_put(s, 0, route("one", &a, 1)), 0);
    cr_assert_eq(publish(s, NULL), 0);
    cr_assert(accepts(&a), "%s listens once publish returned", a.text);
}

Test(dataplane, a_listener_that_cannot_be_opened_is_reported_and_left_out)
{
    struct addr addrs[2] = {free_addr(), free_addr()};
    /* someone else listens on the first address */
    int taken = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(bind(taken, (const struct sockaddr *)&addrs[0].ss, addrs[0].len), 0);
    cr_assert_eq(listen(taken, 1), 0);

    struct route_snapshot *s = route_snapshot_derive(NULL);
    struct route_service *r = route("two", addrs, 2);
    cr_assert_eq(route_snapshot_put(s, 0, route_service_ref(r)), 0);
    struct dataplane_listen_error *errs;
    cr_assert_eq(publish(s, &errs), 1);
    cr_assert(addr_equal(&errs[0].addr, &addrs[0]));
    cr_assert_str_eq(svc_state_name(errs[0].svc), "two");
    cr_assert_not_null(strstr(errs[0].why, addrs[0].text), "the message names the address: %s",
                       errs[0].why);
    dataplane_listen_errors_free(errs, 1);
    cr_assert(accepts(&addrs[1]), "the route's other listener is open");
    route_service_unref(r);

    /* once the address is free, publishing the route again (built anew) opens it */
    close(taken);
    s = route_snapshot_derive(NULL);
    cr_assert_eq(route_snapshot_put(s, 0, route("two", addrs, 2)), 0);
    cr_assert_eq(publish(s, NULL), 0);
    cr_assert(accepts(&addrs[0]));
}

Test(dataplane, a_listener_closes_when_no_published_route_names_it)
{
    struct addr a = free_addr();
    struct route_snapshot *s = route_snapshot_derive(NULL);
    cr_assert_eq(route_snapshot_put(s, 0, route("x", &a, 1)), 0);
    cr_assert_eq(route_snapshot_put(s, 1, route("y", &a, 1)), 0);
    cr_assert_eq(publish(route_snapshot_ref(s), NULL), 0);

    struct route_snapshot *s2 = route_snapshot_derive(s);
    cr_assert_eq(route_snapshot_put(s2, 0, NULL), 0);
    cr_assert_eq(publish(route_snapshot_ref(s2), NULL), 0);
    cr_assert(accepts(&a), "y still names it");

    struct route_snapshot *s3 = route_snapshot_derive(s2);
    cr_assert_eq(route_snapshot_put(s3, 1, NULL), 0);
    cr_assert_eq(route_snapshot_services(s3), 0);
    cr_assert_eq(publish(s3, NULL), 0);
    cr_assert(!accepts(&a), "no route names it: closed");
    route_snapshot_unref(s);
    route_snapshot_unref(s2);
}

Test(dataplane, shared_port_errors_name_no_service)
{
    struct addr a = free_addr();
    int taken = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(bind(taken, (const struct sockaddr *)&a.ss, a.len), 0);
    cr_assert_eq(listen(taken, 1), 0);
    struct route_snapshot *s = route_snapshot_derive(NULL);
    cr_assert_eq(route_snapshot_add_shared(s, &a), 0);
    struct dataplane_listen_error *errs;
    cr_assert_eq(publish(s, &errs), 1);
    cr_assert_null(errs[0].svc);
    dataplane_listen_errors_free(errs, 1);
    close(taken);
}

Test(dataplane, service_handles_count_held_and_mark_ready_only_while_held)
{
    struct svc_state *s = dataplane_service(dp, "ns", "web");
    cr_assert_str_eq(svc_state_key(s), "ns/web");
    cr_assert_eq(svc_state_held(s), 0);
    cr_assert_eq(svc_state_wake_started_ns(s), 0);
    struct svc_state *again = dataplane_service(dp, "ns", "web");
    cr_assert_eq(again, s, "one state per namespace/name");
    svc_state_unref(again);
    svc_state_unref(s);
}
