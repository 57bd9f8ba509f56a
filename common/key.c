/*
 * key: see key.h.
 */
#include "common/key.h"

#include <stdio.h>

int key_make(char *out, size_t len, const char *ns, const char *name)
{
    int n = ns && *ns ? snprintf(out, len, "%s/%s", ns, name) : snprintf(out, len, "%s", name);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}
