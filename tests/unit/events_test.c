/*
 * events (and leader's MicroTime): the pure helpers behind the Event and Lease objects. Event
 * names must be valid DNS subdomains of at most 253 characters whatever the object's name;
 * messages are cut without splitting a UTF-8 character; times are the API's two formats
 * (Time for Events, MicroTime for Leases).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "controller/kube/events.h"

Test(events, name_is_object_dot_16_hex)
{
    char buf[EVENTS_NAME_MAX + 1];
    cr_assert_eq(events_name("web", 0x17a2b3c4d5e6f708ULL, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "web.17a2b3c4d5e6f708");
    cr_assert_eq(events_name("web", 1, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "web.0000000000000001");
}

Test(events, long_name_is_cut_to_253)
{
    char name[300], buf[EVENTS_NAME_MAX + 1];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    cr_assert_eq(events_name(name, 0xabcULL, buf, sizeof(buf)), 0);
    cr_assert_eq(strlen(buf), 253);
    cr_assert_str_eq(buf + 236, ".0000000000000abc");
}

Test(events, cut_never_leaves_dash_or_dot_before_the_suffix)
{
    char name[300], buf[EVENTS_NAME_MAX + 1];
    memset(name, 'a', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    name[235] = '-';
    name[234] = '.';
    cr_assert_eq(events_name(name, 5, buf, sizeof(buf)), 0);
    cr_assert_eq(strlen(buf), 234 + 17);
    cr_assert_eq(buf[233], 'a');
    cr_assert_eq(buf[234], '.');
}

Test(events, name_buffer_too_small)
{
    char buf[10];
    cr_assert_eq(events_name("web", 5, buf, sizeof(buf)), -1);
}

Test(events, truncate_keeps_utf8_whole)
{
    char s[16];
    strcpy(s, "ab\xc3\xa9"
              "cd"); /* "abécd": é is 2 bytes at 2..3 */
    cr_assert_eq(events_truncate_utf8(s, 3), 2);
    cr_assert_str_eq(s, "ab");
    strcpy(s, "ab\xc3\xa9"
              "cd");
    cr_assert_eq(events_truncate_utf8(s, 4), 4);
    cr_assert_str_eq(s, "ab\xc3\xa9");
    strcpy(s, "short");
    cr_assert_eq(events_truncate_utf8(s, 100), 5);
    cr_assert_str_eq(s, "short");
}
