/*
 * pathprobe_nonce_test: the data-path probe's nonce grammar (what the data plane accepts and
 * echoes) and the fresh nonces the leader makes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/pathprobe_nonce.h"

static bool valid(const char *s)
{
    return pathprobe_nonce_valid(s, strlen(s));
}

Test(pathprobe_nonce, letters_digits_underscore_and_dash_are_valid)
{
    cr_assert(valid("a"));
    cr_assert(valid("Z"));
    cr_assert(valid("0"));
    cr_assert(valid("-"));
    cr_assert(valid("_"));
    cr_assert(valid("abc-DEF_0123456789"));
    char max[PATHPROBE_NONCE_MAX + 1];
    memset(max, 'x', PATHPROBE_NONCE_MAX);
    max[PATHPROBE_NONCE_MAX] = '\0';
    cr_assert(valid(max), "64 characters is the limit, included");
}

Test(pathprobe_nonce, empty_too_long_and_other_characters_are_invalid)
{
    cr_assert_not(valid(""));
    char over[PATHPROBE_NONCE_MAX + 2];
    memset(over, 'x', PATHPROBE_NONCE_MAX + 1);
    over[PATHPROBE_NONCE_MAX + 1] = '\0';
    cr_assert_not(valid(over), "65 characters");
    const char *bad[] = {"a b",  "a/b",  "a:b",  "a.b",      "a+b",   "a=b", "a\"b",
                         "a\tb", "a\rb", "a\nb", "\xc3\xa9", "a%20b", " a",  "a "};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(valid(bad[i]), "\"%s\" must be invalid", bad[i]);
    cr_assert_not(pathprobe_nonce_valid("a\0b", 3), "a NUL inside");
}

Test(pathprobe_nonce, new_nonces_are_valid_hexadecimal_and_differ)
{
    char a[PATHPROBE_NONCE_NEW_LEN + 1], b[PATHPROBE_NONCE_NEW_LEN + 1];
    cr_assert_eq(pathprobe_nonce_new(a, sizeof(a)), 0);
    cr_assert_eq(pathprobe_nonce_new(b, sizeof(b)), 0);
    cr_assert_eq(strlen(a), PATHPROBE_NONCE_NEW_LEN);
    cr_assert(valid(a));
    cr_assert_eq(strspn(a, "0123456789abcdef"), PATHPROBE_NONCE_NEW_LEN);
    cr_assert_str_neq(a, b, "128 random bits each");
}

Test(pathprobe_nonce, new_refuses_a_buffer_too_small)
{
    char small[PATHPROBE_NONCE_NEW_LEN] = "junk";
    errno = 0;
    cr_assert_eq(pathprobe_nonce_new(small, sizeof(small)), -1);
    cr_assert_eq(errno, EINVAL);
    cr_assert_str_eq(small, "", "left empty, never a partial nonce");
}
