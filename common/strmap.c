/*
 * strmap: see strmap.h.
 */
#include "common/strmap.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static char tombstone;
#define STRMAP_TOMBSTONE (&tombstone)

uint32_t strmap_hash(uint32_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

static bool live(const struct strmap_slot *s)
{
    return s->key && s->key != STRMAP_TOMBSTONE;
}

/* The slot holding key, or NULL. */
static struct strmap_slot *find(const struct strmap *m, const char *key, uint32_t h)
{
    if (!m->size)
        return NULL;
    size_t mask = m->size - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct strmap_slot *s = &m->slots[i];
        if (!s->key)
            return NULL;
        if (s->key != STRMAP_TOMBSTONE && s->hash == h && strcmp(s->key, key) == 0)
            return s;
    }
}

void *strmap_get(const struct strmap *m, const char *key)
{
    struct strmap_slot *s = find(m, key, strmap_hash(STRMAP_SEED, key, strlen(key)));
    return s ? s->value : NULL;
}

static int grow(struct strmap *m)
{
    size_t size = m->size ? m->size : 16;
    while ((m->used + 1) * 4 >= size * 3)
        size *= 2;
    struct strmap_slot *slots = calloc(size, sizeof(*slots));
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->size; i++) {
        struct strmap_slot *s = &m->slots[i];
        if (!live(s))
            continue;
        size_t j = s->hash & (size - 1);
        while (slots[j].key)
            j = (j + 1) & (size - 1);
        slots[j] = *s;
    }
    free(m->slots);
    m->slots = slots;
    m->size = size;
    m->dead = 0;
    return 0;
}

int strmap_put(struct strmap *m, const char *key, void *value)
{
    uint32_t h = strmap_hash(STRMAP_SEED, key, strlen(key));
    struct strmap_slot *s = find(m, key, h);
    if (s) {
        s->value = value;
        return 0;
    }
    if ((m->used + m->dead + 1) * 4 >= m->size * 3 && grow(m) < 0)
        return -1;
    char *copy = strdup(key);
    if (!copy)
        return -1;
    size_t mask = m->size - 1;
    size_t i = h & mask;
    while (live(&m->slots[i]))
        i = (i + 1) & mask;
    if (m->slots[i].key == STRMAP_TOMBSTONE)
        m->dead--;
    m->slots[i] = (struct strmap_slot){.key = copy, .value = value, .hash = h};
    m->used++;
    return 0;
}

void *strmap_del(struct strmap *m, const char *key)
{
    struct strmap_slot *s = find(m, key, strmap_hash(STRMAP_SEED, key, strlen(key)));
    if (!s)
        return NULL;
    void *v = s->value;
    free(s->key);
    s->key = STRMAP_TOMBSTONE;
    s->value = NULL;
    m->used--;
    m->dead++;
    return v;
}

bool strmap_next(const struct strmap *m, size_t *pos, const char **key, void **value)
{
    for (size_t i = *pos; i < m->size; i++) {
        if (live(&m->slots[i])) {
            *pos = i + 1;
            *key = m->slots[i].key;
            *value = m->slots[i].value;
            return true;
        }
    }
    *pos = m->size;
    return false;
}

void strmap_each(const struct strmap *m, void (*fn)(const char *key, void *value, void *arg),
                 void *arg)
{
    for (size_t i = 0; i < m->size; i++) {
        if (live(&m->slots[i]))
            fn(m->slots[i].key, m->slots[i].value, arg);
    }
}

void strmap_clear(struct strmap *m)
{
    for (size_t i = 0; i < m->size; i++) {
        if (live(&m->slots[i]))
            free(m->slots[i].key);
    }
    free(m->slots);
    *m = (struct strmap){0};
}
