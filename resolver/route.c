/*
 * route: service state, snapshots and their publication. See route.h.
 */
#include "resolver/route.h"
#include "common/key.h"
#include "common/strmap.h"
#include "resolver/waitpage.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const outcome_names[OUTCOME_COUNT] = {
    "forwarded", "probe", "timeout", "rejected", "cancelled", "bad_request", "upstream_error",
};

void svc_registry_init(struct svc_registry *reg, int nworkers)
{
    pthread_mutex_init(&reg->mu, NULL);
    reg->head = NULL;
    reg->by_key = (struct strmap){0};
    reg->nworkers = nworkers;
}

void svc_registry_destroy(struct svc_registry *reg)
{
    struct svc_state *s = reg->head;
    while (s) {
        struct svc_state *next = s->next;
        svc_state_unref(s);
        s = next;
    }
    reg->head = NULL;
    strmap_clear(&reg->by_key);
    pthread_mutex_destroy(&reg->mu);
}

static struct svc_state *svc_state_new(const char *ns, const char *name, int nworkers)
{
    struct svc_state *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->ns = strdup(ns);
    s->name = strdup(name);
    size_t klen = strlen(ns) + strlen(name) + 2;
    s->key = malloc(klen);
    s->workers = calloc((size_t)nworkers, sizeof(*s->workers));
    if (!s->ns || !s->name || !s->key || !s->workers) {
        free(s->ns);
        free(s->name);
        free(s->key);
        free(s->workers);
        free(s);
        return NULL;
    }
    key_make(s->key, klen, ns, name);
    s->nworkers = nworkers;
    for (int i = 0; i < nworkers; i++)
        TAILQ_INIT(&s->workers[i].held);
    atomic_init(&s->refs, 1);
    return s;
}

struct svc_hists *svc_state_hists(struct svc_state *s)
{
    struct svc_hists *h = atomic_load_explicit(&s->hists, memory_order_acquire);
    if (h)
        return h;
    struct svc_hists *fresh = calloc(1, sizeof(*fresh));
    if (!fresh)
        return NULL;
    if (atomic_compare_exchange_strong_explicit(&s->hists, &h, fresh, memory_order_acq_rel,
                                                memory_order_acquire))
        return fresh;
    free(fresh); /* another thread published its own first: h is that one */
    return h;
}

const struct svc_hists *svc_state_hists_peek(const struct svc_state *s)
{
    return atomic_load_explicit(&((struct svc_state *)s)->hists, memory_order_acquire);
}

void svc_state_labels(const struct svc_state *s, char *buf, size_t len)
{
    metrics_service_labels(buf, len, s->ns, s->name);
}

struct svc_state *svc_registry_get(struct svc_registry *reg, const char *ns, const char *name)
{
    size_t klen = strlen(ns) + strlen(name) + 2;
    char *key = malloc(klen);
    if (!key)
        return NULL;
    key_make(key, klen, ns, name);
    pthread_mutex_lock(&reg->mu);
    struct svc_state *s = strmap_get(&reg->by_key, key);
    if (!s) {
        s = svc_state_new(ns, name, reg->nworkers);
        if (s && strmap_put(&reg->by_key, s->key, s) < 0) {
            svc_state_unref(s);
            s = NULL;
        }
        if (s) {
            s->next = reg->head;
            reg->head = s;
        }
    }
    free(key);
    if (s)
        svc_state_ref(s);
    pthread_mutex_unlock(&reg->mu);
    return s;
}

void svc_registry_each(struct svc_registry *reg, void (*fn)(struct svc_state *, void *), void *arg)
{
    pthread_mutex_lock(&reg->mu);
    for (struct svc_state *s = reg->head; s; s = s->next)
        fn(s, arg);
    pthread_mutex_unlock(&reg->mu);
}

struct svc_state *svc_state_ref(struct svc_state *svc)
{
    atomic_fetch_add(&svc->refs, 1);
    return svc;
}

void svc_state_unref(struct svc_state *svc)
{
    if (!svc || atomic_fetch_sub(&svc->refs, 1) != 1)
        return;
    /* Hold queues are empty by now: every held connection keeps a reference. */
    for (int i = 0; i < svc->nworkers; i++)
        free(svc->workers[i].loads);
    free(svc->workers);
    free(atomic_load(&svc->hists));
    free(svc->ns);
    free(svc->name);
    free(svc->key);
    free(svc);
}

struct route_probes *route_probes_new(struct probe_rules *rules)
{
    struct route_probes *p = calloc(1, sizeof(*p));
    if (!p) {
        probe_rules_free(rules);
        return NULL;
    }
    atomic_init(&p->refs, 1);
    p->rules = rules;
    return p;
}

struct route_probes *route_probes_ref(struct route_probes *p)
{
    if (p)
        atomic_fetch_add(&p->refs, 1);
    return p;
}

void route_probes_unref(struct route_probes *p)
{
    if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    probe_rules_free(p->rules);
    free(p);
}

struct route_service *route_service_new(struct svc_state *svc, size_t n_ports, size_t n_listeners)
{
    struct route_service *r = calloc(1, sizeof(*r));
    if (r) {
        r->ports = calloc(n_ports ? n_ports : 1, sizeof(*r->ports));
        r->listeners = calloc(n_listeners ? n_listeners : 1, sizeof(*r->listeners));
    }
    if (!r || !r->ports || !r->listeners) {
        if (r) {
            free(r->ports);
            free(r->listeners);
        }
        free(r);
        svc_state_unref(svc);
        return NULL;
    }
    atomic_init(&r->refs, 1);
    r->svc = svc;
    r->n_ports = n_ports;
    r->cap_listeners = n_listeners;
    for (size_t i = 0; i < n_listeners; i++) {
        r->listeners[i].kind = LISTENER_SERVICE;
        r->listeners[i].service = r;
    }
    return r;
}

struct route_service *route_service_ref(struct route_service *r)
{
    if (r)
        atomic_fetch_add(&r->refs, 1);
    return r;
}

void route_service_unref(struct route_service *r)
{
    if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
        return;
    svc_state_unref(r->svc);
    route_probes_unref(r->probes);
    for (size_t p = 0; p < r->n_ports; p++) {
        free(r->ports[p].name);
        free(r->ports[p].endpoints);
    }
    free(r->ports);
    free(r->listeners);
    free(r->reason);
    waitpage_free(r->page);
    free(r);
}

/* ---- the persistent array ---- */

struct route_chunk {
    _Atomic int refs;
    bool services; /* entries are route_service references (else index entries) */
    void *v[ROUTE_CHUNK];
};

static void chunk_unref(struct route_chunk *ch)
{
    if (!ch || atomic_fetch_sub(&ch->refs, 1) != 1)
        return;
    for (size_t i = 0; ch->services && i < ROUTE_CHUNK; i++)
        route_service_unref(ch->v[i]);
    free(ch);
}

static void *vec_get(const struct route_vec *v, size_t i)
{
    size_t c = i / ROUTE_CHUNK;
    return c < v->n_chunks && v->chunks[c] ? v->chunks[c]->v[i % ROUTE_CHUNK] : NULL;
}

/* Shares every chunk of src (one more reference each). */
static int vec_copy(struct route_vec *dst, const struct route_vec *src)
{
    dst->chunks = NULL;
    dst->n_chunks = 0;
    if (!src->n_chunks)
        return 0;
    dst->chunks = malloc(src->n_chunks * sizeof(*dst->chunks));
    if (!dst->chunks)
        return -1;
    for (size_t c = 0; c < src->n_chunks; c++) {
        dst->chunks[c] = src->chunks[c];
        if (dst->chunks[c])
            atomic_fetch_add(&dst->chunks[c]->refs, 1);
    }
    dst->n_chunks = src->n_chunks;
    return 0;
}

static void vec_release(struct route_vec *v)
{
    for (size_t c = 0; c < v->n_chunks; c++)
        chunk_unref(v->chunks[c]);
    free(v->chunks);
    v->chunks = NULL;
    v->n_chunks = 0;
}

/*
 * Sets entry i to p, copying its chunk first when another snapshot shares it (a chunk only
 * this unpublished snapshot holds is changed in place: nobody else can reach it, and only
 * the publisher's thread takes references to chunks). For a services vec, the entry's old
 * reference is released and p's is taken over. Returns 0, or -1 when out of memory.
 */
static int vec_set(struct route_vec *v, size_t i, void *p, bool services)
{
    size_t c = i / ROUTE_CHUNK;
    if (c >= v->n_chunks) {
        size_t n = v->n_chunks ? v->n_chunks : 1;
        while (n <= c)
            n *= 2;
        struct route_chunk **grown = realloc(v->chunks, n * sizeof(*grown));
        if (!grown)
            return -1;
        memset(grown + v->n_chunks, 0, (n - v->n_chunks) * sizeof(*grown));
        v->chunks = grown;
        v->n_chunks = n;
    }
    struct route_chunk *ch = v->chunks[c];
    if (!ch || atomic_load(&ch->refs) > 1) {
        struct route_chunk *own = calloc(1, sizeof(*own));
        if (!own)
            return -1;
        atomic_init(&own->refs, 1);
        own->services = services;
        if (ch) {
            memcpy(own->v, ch->v, sizeof(own->v));
            for (size_t k = 0; services && k < ROUTE_CHUNK; k++)
                route_service_ref(own->v[k]);
            chunk_unref(ch);
        }
        v->chunks[c] = ch = own;
    }
    void *old = ch->v[i % ROUTE_CHUNK];
    ch->v[i % ROUTE_CHUNK] = p;
    if (services)
        route_service_unref(old);
    return 0;
}

/* ---- the name index ---- */

#define INDEX_DELETED ((void *)UINTPTR_MAX)

/* FNV-1a over "ns/name" without building the string. */
static uint32_t name_hash(const char *ns, size_t ns_len, const char *name, size_t name_len)
{
    uint32_t h = strmap_hash(STRMAP_SEED, ns, ns_len);
    h = strmap_hash(h, "/", 1);
    return strmap_hash(h, name, name_len);
}

static uint32_t svc_hash(const struct svc_state *svc)
{
    return name_hash(svc->ns, strlen(svc->ns), svc->name, strlen(svc->name));
}

static int index_insert(struct route_snapshot *s, size_t slot, const struct svc_state *svc)
{
    size_t mask = s->index_size - 1;
    size_t i = svc_hash(svc) & mask;
    void *e;
    while ((e = vec_get(&s->index, i)) && e != INDEX_DELETED)
        i = (i + 1) & mask;
    if (vec_set(&s->index, i, (void *)(uintptr_t)(slot + 1), false) < 0)
        return -1;
    if (!e)
        s->index_used++;
    return 0;
}

static void index_remove(struct route_snapshot *s, size_t slot, const struct svc_state *svc)
{
    if (!s->index_size)
        return;
    size_t mask = s->index_size - 1;
    void *e;
    for (size_t i = svc_hash(svc) & mask; (e = vec_get(&s->index, i)); i = (i + 1) & mask) {
        if (e == (void *)(uintptr_t)(slot + 1)) {
            /* cannot fail: the chunk exists (copying it may, and then the entry stays: a
             * lookup compares names, so a stale entry finds nothing wrong) */
            vec_set(&s->index, i, INDEX_DELETED, false);
            return;
        }
    }
}

/* A fresh index for every service, at least twice as large as their number. O(n). */
static int index_rebuild(struct route_snapshot *s)
{
    size_t size = 64;
    while (size < (s->n_services + 1) * 2)
        size *= 2;
    struct route_vec old = s->index;
    size_t old_size = s->index_size, old_used = s->index_used;
    s->index = (struct route_vec){0};
    s->index_size = size;
    s->index_used = 0;
    const struct route_service *r;
    for (size_t i = 0; (r = route_snapshot_next(s, &i)); i++) {
        if (index_insert(s, i, r->svc) < 0) {
            vec_release(&s->index);
            s->index = old;
            s->index_size = old_size;
            s->index_used = old_used;
            return -1;
        }
    }
    vec_release(&old);
    return 0;
}

/* ---- snapshots ---- */

struct route_snapshot *route_snapshot_derive(const struct route_snapshot *prev)
{
    struct route_snapshot *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    atomic_init(&s->refs, 1);
    if (prev) {
        if (vec_copy(&s->slots, &prev->slots) < 0 || vec_copy(&s->index, &prev->index) < 0) {
            route_snapshot_unref(s);
            return NULL;
        }
        s->n_slots = prev->n_slots;
        s->n_services = prev->n_services;
        s->index_size = prev->index_size;
        s->index_used = prev->index_used;
    }
    return s;
}

int route_snapshot_put(struct route_snapshot *s, size_t slot, struct route_service *r)
{
    const struct route_service *old = vec_get(&s->slots, slot);
    if (old == r) {
        route_service_unref(r); /* the slot holds its own reference already */
        return 0;
    }
    bool renamed = !old || !r || old->svc != r->svc;
    if (old && renamed)
        index_remove(s, slot, old->svc);
    size_t was = s->n_services;
    if (vec_set(&s->slots, slot, r, true) < 0) {
        if (old && renamed)
            index_insert(s, slot, old->svc); /* put back what index_remove took */
        route_service_unref(r);
        return -1;
    }
    s->n_services = was + (r != NULL) - (old != NULL);
    if (r && slot >= s->n_slots)
        s->n_slots = slot + 1;
    if (!r || !renamed)
        return 0;
    if ((s->index_used + 1) * 2 > s->index_size)
        return index_rebuild(s);
    return index_insert(s, slot, r->svc);
}

int route_snapshot_add_shared(struct route_snapshot *s, const struct addr *addr)
{
    struct route_listener *grown =
        realloc(s->listeners, (s->n_listeners + 1) * sizeof(*s->listeners));
    if (!grown)
        return -1;
    s->listeners = grown;
    s->listeners[s->n_listeners++] =
        (struct route_listener){.addr = *addr, .kind = LISTENER_SHARED};
    return 0;
}

const struct route_service *route_snapshot_slot(const struct route_snapshot *s, size_t slot)
{
    return s ? vec_get(&s->slots, slot) : NULL;
}

const struct route_service *route_snapshot_next(const struct route_snapshot *s, size_t *slot)
{
    for (size_t i = *slot; s && i < s->n_slots; i++) {
        const struct route_chunk *ch =
            i / ROUTE_CHUNK < s->slots.n_chunks ? s->slots.chunks[i / ROUTE_CHUNK] : NULL;
        if (!ch) {
            i = (i / ROUTE_CHUNK + 1) * ROUTE_CHUNK - 1; /* the whole chunk is empty */
            continue;
        }
        if (ch->v[i % ROUTE_CHUNK]) {
            *slot = i;
            return ch->v[i % ROUTE_CHUNK];
        }
    }
    return NULL;
}

const struct route_service *route_snapshot_find(const struct route_snapshot *s, const char *ns,
                                                size_t ns_len, const char *name, size_t name_len)
{
    if (!s || !s->index_size)
        return NULL;
    size_t mask = s->index_size - 1;
    void *e;
    for (size_t i = name_hash(ns, ns_len, name, name_len) & mask; (e = vec_get(&s->index, i));
         i = (i + 1) & mask) {
        if (e == INDEX_DELETED)
            continue;
        const struct route_service *r = vec_get(&s->slots, (uintptr_t)e - 1);
        if (r && strlen(r->svc->ns) == ns_len && memcmp(r->svc->ns, ns, ns_len) == 0 &&
            strlen(r->svc->name) == name_len && memcmp(r->svc->name, name, name_len) == 0)
            return r;
    }
    return NULL;
}

long route_snapshot_diff(const struct route_snapshot *a, const struct route_snapshot *b,
                         struct route_change **out)
{
    static const struct route_vec none = {0};
    const struct route_vec *va = a ? &a->slots : &none, *vb = b ? &b->slots : &none;
    size_t n_chunks = va->n_chunks > vb->n_chunks ? va->n_chunks : vb->n_chunks;
    struct route_change *changes = NULL;
    size_t n = 0, cap = 0;
    for (size_t c = 0; c < n_chunks; c++) {
        const struct route_chunk *ca = c < va->n_chunks ? va->chunks[c] : NULL;
        const struct route_chunk *cb = c < vb->n_chunks ? vb->chunks[c] : NULL;
        if (ca == cb)
            continue;
        for (size_t k = 0; k < ROUTE_CHUNK; k++) {
            const struct route_service *was = ca ? ca->v[k] : NULL;
            const struct route_service *is = cb ? cb->v[k] : NULL;
            if (was == is)
                continue;
            if (n == cap) {
                size_t ncap = cap ? cap * 2 : 16;
                struct route_change *grown = realloc(changes, ncap * sizeof(*grown));
                if (!grown) {
                    free(changes);
                    return -1;
                }
                changes = grown;
                cap = ncap;
            }
            changes[n++] = (struct route_change){c * ROUTE_CHUNK + k, was, is};
        }
    }
    *out = changes;
    return (long)n;
}

struct route_snapshot *route_snapshot_ref(struct route_snapshot *s)
{
    if (s)
        atomic_fetch_add(&s->refs, 1);
    return s;
}

void route_snapshot_unref(struct route_snapshot *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1)
        return;
    vec_release(&s->slots);
    vec_release(&s->index);
    free(s->listeners);
    free(s);
}

void route_table_init(struct route_table *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
}

void route_table_destroy(struct route_table *t)
{
    route_snapshot_unref(t->current);
    t->current = NULL;
    pthread_mutex_destroy(&t->mu);
}

void route_table_subscribe(struct route_table *t, struct event *ev)
{
    pthread_mutex_lock(&t->mu);
    if (t->n_subscribers < ROUTE_MAX_SUBSCRIBERS)
        t->subscribers[t->n_subscribers++] = ev;
    pthread_mutex_unlock(&t->mu);
}

void route_table_publish(struct route_table *t, struct route_snapshot *s)
{
    pthread_mutex_lock(&t->mu);
    struct route_snapshot *old = t->current;
    s->generation = ++t->generation;
    t->current = s;
    for (size_t i = 0; i < t->n_subscribers; i++)
        event_active(t->subscribers[i], EV_READ, 0);
    pthread_mutex_unlock(&t->mu);
    route_snapshot_unref(old);
}

struct route_snapshot *route_table_acquire(struct route_table *t)
{
    pthread_mutex_lock(&t->mu);
    struct route_snapshot *s = route_snapshot_ref(t->current);
    pthread_mutex_unlock(&t->mu);
    return s;
}
