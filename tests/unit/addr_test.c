/* addr: operators' address text in, canonical text and sockaddr out; names never resolved. */
#include <criterion/criterion.h>
#include <netinet/in.h>

#include "common/addr.h"

Test(addr, parses_ipv4)
{
    struct addr a;
    char err[128];
    cr_assert_eq(addr_parse("127.0.1.5:18080", &a, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(a.ss.ss_family, AF_INET);
    cr_assert_eq(addr_port(&a), 18080);
    cr_assert_str_eq(a.text, "127.0.1.5:18080");
}

Test(addr, parses_ipv6_in_brackets)
{
    struct addr a;
    char err[128];
    cr_assert_eq(addr_parse("[::1]:8013", &a, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(a.ss.ss_family, AF_INET6);
    cr_assert_str_eq(a.text, "[::1]:8013");
}

Test(addr, empty_host_means_every_address)
{
    struct addr a;
    char err[128];
    cr_assert_eq(addr_parse(":8013", &a, err, sizeof(err)), 0);
    cr_assert_str_eq(a.text, "0.0.0.0:8013");
    cr_assert_eq(addr_parse("localhost:80", &a, err, sizeof(err)), 0);
    cr_assert_str_eq(a.text, "127.0.0.1:80");
}

Test(addr, rejects_bad_input_with_reason)
{
    struct addr a;
    char err[128];
    cr_assert_eq(addr_parse("127.0.0.1", &a, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "missing port"), "%s", err);
    cr_assert_eq(addr_parse("127.0.0.1:70000", &a, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "port"), "%s", err);
    cr_assert_eq(addr_parse("example.com:80", &a, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "not a numeric IP"), "%s", err);
    cr_assert_eq(addr_parse("::1:80", &a, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "[IP]:PORT"), "%s", err);
    cr_assert_eq(addr_parse("1.2.3.4:", &a, err, sizeof(err)), -1);
}

Test(addr, equality_is_family_ip_and_port)
{
    struct addr a, b, c;
    char err[128];
    addr_parse("127.0.0.1:80", &a, err, sizeof(err));
    addr_parse("localhost:80", &b, err, sizeof(err));
    addr_parse("127.0.0.1:81", &c, err, sizeof(err));
    cr_assert(addr_equal(&a, &b));
    cr_assert_not(addr_equal(&a, &c));
    struct addr d;
    addr_from_sockaddr((const struct sockaddr *)&a.ss, a.len, &d);
    cr_assert(addr_equal(&a, &d));
    cr_assert_str_eq(d.text, "127.0.0.1:80");
}

Test(addr, format_brackets_ipv6_only)
{
    char buf[ADDR_TEXT_MAX];
    cr_assert_eq(addr_format(buf, sizeof(buf), "10.0.0.1", 80), 0);
    cr_assert_str_eq(buf, "10.0.0.1:80");
    cr_assert_eq(addr_format(buf, sizeof(buf), "fd00::1", 8080), 0);
    cr_assert_str_eq(buf, "[fd00::1]:8080");
    cr_assert_eq(
        addr_format(buf, sizeof(buf), "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535), 0,
        "ADDR_TEXT_MAX holds the longest");
    cr_assert_eq(addr_format(buf, 8, "10.0.0.1", 80), -1);
}
