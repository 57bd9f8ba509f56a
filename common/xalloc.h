/*
 * xalloc: allocation that cannot fail, for small allocations of a fixed size (a struct, a
 * name). Running out of memory for those leaves no sensible way on: each logs one error line
 * naming the size asked for, then aborts. Allocations sized by input (request bodies, held
 * bytes, JSON documents) keep malloc and their error paths, where failing one request is right.
 * Free with free(3).
 */
#ifndef HOLDFAST_XALLOC_H
#define HOLDFAST_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t size);
char *xstrdup(const char *s);

#endif
