/*
 * key: the text key of a Kubernetes object in the indexes: "namespace/name", or "name" for a
 * cluster-scoped object. One spelling, so that a key built by one module finds what another
 * stored.
 */
#ifndef HOLDFAST_KEY_H
#define HOLDFAST_KEY_H

#include <stddef.h>

/* Bytes that hold the key of any object: a namespace (63) + '/' + a name (253) + NUL. */
#define KEY_MAX 320

/*
 * Writes the key of (ns, name) into out (len bytes; KEY_MAX holds any valid object's): ns NULL
 * or "" gives "name". Returns 0, or -1 when it does not fit (out holds what fitted).
 */
int key_make(char *out, size_t len, const char *ns, const char *name);

#endif
