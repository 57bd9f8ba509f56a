/*
 * strmap: the string -> pointer hash map behind the controller's and data plane's indexes.
 * Checked against a plain array model through inserts, replacements, deletes (tombstones) and
 * growth, including re-inserting deleted keys.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/strmap.h"

Test(strmap, empty_map_finds_nothing)
{
    struct strmap m = {0};
    cr_assert_null(strmap_get(&m, "a"));
    cr_assert_null(strmap_del(&m, "a"));
    strmap_clear(&m);
}

Test(strmap, put_get_replace_delete)
{
    struct strmap m = {0};
    int a = 1, b = 2;
    cr_assert_eq(strmap_put(&m, "ns/a", &a), 0);
    cr_assert_eq(strmap_get(&m, "ns/a"), &a);
    cr_assert_null(strmap_get(&m, "ns/b"));
    cr_assert_eq(strmap_put(&m, "ns/a", &b), 0);
    cr_assert_eq(strmap_get(&m, "ns/a"), &b);
    cr_assert_eq(m.used, 1);
    cr_assert_eq(strmap_del(&m, "ns/a"), &b);
    cr_assert_null(strmap_get(&m, "ns/a"));
    cr_assert_eq(m.used, 0);
    strmap_clear(&m);
}

static void count(const char *key, void *value, void *arg)
{
    (void)key;
    *(size_t *)arg += (size_t)(uintptr_t)value;
}

Test(strmap, many_keys_with_deletes_match_a_model)
{
    enum { N = 20000 };
    struct strmap m = {0};
    static bool present[N];
    char key[32];
    /* insert all, delete every third, re-insert every sixth: tombstones are probed past and
     * reused, growth rehashes only live keys */
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "ns-%d/svc-%d", i % 97, i);
        cr_assert_eq(strmap_put(&m, key, (void *)(uintptr_t)(i + 1)), 0);
        present[i] = true;
    }
    for (int i = 0; i < N; i += 3) {
        snprintf(key, sizeof(key), "ns-%d/svc-%d", i % 97, i);
        cr_assert_eq(strmap_del(&m, key), (void *)(uintptr_t)(i + 1));
        present[i] = false;
    }
    for (int i = 0; i < N; i += 6) {
        snprintf(key, sizeof(key), "ns-%d/svc-%d", i % 97, i);
        cr_assert_eq(strmap_put(&m, key, (void *)(uintptr_t)(i + 1)), 0);
        present[i] = true;
    }
    size_t live = 0, sum = 0, want_sum = 0;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof(key), "ns-%d/svc-%d", i % 97, i);
        void *v = strmap_get(&m, key);
        if (present[i]) {
            cr_assert_eq(v, (void *)(uintptr_t)(i + 1), "key %s", key);
            live++;
            want_sum += (size_t)i + 1;
        } else {
            cr_assert_null(v, "deleted key %s still found", key);
        }
    }
    cr_assert_eq(m.used, live);
    strmap_each(&m, count, &sum);
    cr_assert_eq(sum, want_sum);
    cr_assert(m.used * 4 < m.size * 3, "load factor kept under 3/4");
    strmap_clear(&m);
    cr_assert_eq(m.size, 0);
}

Test(strmap, churn_does_not_grow_without_bound)
{
    /* put/delete of ever new keys: tombstones must be reclaimed by rehashing */
    struct strmap m = {0};
    char key[32];
    int v = 0;
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        cr_assert_eq(strmap_put(&m, key, &v), 0);
        cr_assert_eq(strmap_del(&m, key), &v);
    }
    cr_assert_eq(m.used, 0);
    cr_assert_leq(m.size, 64, "size %zu after churn", m.size);
    strmap_clear(&m);
}
