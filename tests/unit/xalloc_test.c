/* xalloc: small allocations succeed; one that cannot be had aborts instead of returning NULL. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/xalloc.h"

Test(xalloc, small_allocations_are_usable)
{
    char *p = xmalloc(16);
    memset(p, 'a', 16);
    int *z = xcalloc(4, sizeof(int));
    cr_assert_eq(z[0] + z[3], 0);
    p = xrealloc(p, 64);
    cr_assert_eq(p[15], 'a');
    char *s = xstrdup("default/hello");
    cr_assert_str_eq(s, "default/hello");
    free(p);
    free(z);
    free(s);
}

/* AddressSanitizer reports an impossible size itself, before malloc could return NULL. */
#ifndef __SANITIZE_ADDRESS__
Test(xalloc, an_impossible_size_aborts, .signal = SIGABRT)
{
    volatile size_t huge = SIZE_MAX / 2;
    void *p = xmalloc(huge);
    free(p);
}
#endif
