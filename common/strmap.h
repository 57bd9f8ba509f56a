/*
 * strmap: a hash map from strings to pointers, for the indexes that keep the control plane and
 * the data plane linear in the number of services (10,000 ElastiServices: DESIGN "Targets").
 *
 * Keys are copied; values are the caller's. Open addressing with linear probing and tombstones,
 * grown at 3/4 load. Not thread-safe: each map has one owner (or the caller's lock).
 */
#ifndef HOLDFAST_STRMAP_H
#define HOLDFAST_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strmap_slot {
    char *key; /* NULL: empty; STRMAP_TOMBSTONE: deleted */
    void *value;
    uint32_t hash;
};

struct strmap {
    struct strmap_slot *slots;
    size_t size; /* slots, a power of two, or 0 before the first insert */
    size_t used; /* live keys */
    size_t dead; /* tombstones */
};

/*
 * FNV-1a (32 bits) over n bytes, continuing from h (start with STRMAP_SEED): the project's one
 * FNV. Besides this map it names resolver EndpointSlices (slices.c names_fit) and indexes route
 * snapshots, so its output must never change: a changed hash renames objects in clusters.
 */
#define STRMAP_SEED 2166136261u
uint32_t strmap_hash(uint32_t h, const void *data, size_t n);

/* The value of key, or NULL. */
void *strmap_get(const struct strmap *m, const char *key);

/* Sets key to value (replacing any). Returns 0, or -1 when out of memory (map unchanged). */
int strmap_put(struct strmap *m, const char *key, void *value);

/* Removes key; returns its value, or NULL when absent. */
void *strmap_del(struct strmap *m, const char *key);

/*
 * Walks the map without a callback, in no particular order:
 *
 *     const char *key; void *value;
 *     for (size_t pos = 0; strmap_next(m, &pos, &key, &value);) ...
 *
 * Returns false at the end. During a walk, putting a key that is present (a new value) and
 * deleting the key just returned are allowed (key is freed then: use it first); adding a key is
 * not (the table may grow).
 */
bool strmap_next(const struct strmap *m, size_t *pos, const char **key, void **value);

/* Calls fn for every key and value, in no particular order. fn must not change the map. */
void strmap_each(const struct strmap *m, void (*fn)(const char *key, void *value, void *arg),
                 void *arg);

/* Frees the map's own memory (not the values) and leaves it empty. */
void strmap_clear(struct strmap *m);

#endif
