/* key: "namespace/name", "name" without a namespace, and KEY_MAX holds the longest. */
#include <criterion/criterion.h>
#include <string.h>

#include "common/key.h"

Test(key, namespaced_and_cluster_scoped)
{
    char k[KEY_MAX];
    cr_assert_eq(key_make(k, sizeof(k), "default", "hello"), 0);
    cr_assert_str_eq(k, "default/hello");
    cr_assert_eq(key_make(k, sizeof(k), "", "node-1"), 0);
    cr_assert_str_eq(k, "node-1");
    cr_assert_eq(key_make(k, sizeof(k), NULL, "node-1"), 0);
    cr_assert_str_eq(k, "node-1");
}

Test(key, key_max_holds_the_longest_names_and_short_buffers_fail)
{
    char ns[64], name[254], k[KEY_MAX];
    memset(ns, 'n', 63);
    ns[63] = '\0';
    memset(name, 'a', 253);
    name[253] = '\0';
    cr_assert_eq(key_make(k, sizeof(k), ns, name), 0);
    cr_assert_eq(strlen(k), 63 + 1 + 253);
    cr_assert_eq(key_make(k, 8, "default", "hello"), -1);
}
