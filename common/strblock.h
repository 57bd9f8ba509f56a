/*
 * strblock: strings copied into one block a cache entry allocates with its struct (bump
 * allocation), so that a cached object is one malloc: size the block with strblock_size over
 * every string, then copy each with strblock_copy. The compact caches of Services,
 * EndpointSlices and ElastiServices (controller/service.c, slices.c, escached.c) use it.
 */
#ifndef HOLDFAST_STRBLOCK_H
#define HOLDFAST_STRBLOCK_H

#include <stddef.h>
#include <string.h>

/* The bytes s takes in a block (with its NUL), 0 for NULL. */
static inline size_t strblock_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copies s to *at and moves *at past it; returns the copy, or NULL (nothing copied) for NULL. */
static inline const char *strblock_copy(char **at, const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*at, s, n);
    const char *out = *at;
    *at += n;
    return out;
}

#endif
