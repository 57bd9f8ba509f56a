/*
 * xalloc: see xalloc.h.
 */
#include "common/xalloc.h"

#include <stdlib.h>
#include <string.h>

#include "common/log.h"

static _Noreturn void out_of_memory(const char *what, size_t size)
{
    log_error("out of memory: aborting", "call=%s bytes=%zu", what, size);
    abort();
}

void *xmalloc(size_t size)
{
    void *p = malloc(size);
    if (!p && size)
        out_of_memory("malloc", size);
    return p;
}

void *xcalloc(size_t count, size_t size)
{
    void *p = calloc(count, size);
    if (!p && count && size)
        out_of_memory("calloc", count * size);
    return p;
}

void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (!q && size)
        out_of_memory("realloc", size);
    return q;
}

char *xstrdup(const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        out_of_memory("strdup", strlen(s) + 1);
    return copy;
}
