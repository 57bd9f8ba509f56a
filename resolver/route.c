/*
 * route: service state, snapshots and their publication. See route.h.
 */
#include "resolver/route.h"

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
    snprintf(s->key, klen, "%s/%s", ns, name);
    metrics_service_labels(s->labels, sizeof(s->labels), ns, name);
    s->nworkers = nworkers;
    for (int i = 0; i < nworkers; i++)
        TAILQ_INIT(&s->workers[i].held);
    atomic_init(&s->refs, 1);
    return s;
}

struct svc_state *svc_registry_get(struct svc_registry *reg, const char *ns, const char *name)
{
    size_t klen = strlen(ns) + strlen(name) + 2;
    char *key = malloc(klen);
    if (!key)
        return NULL;
    snprintf(key, klen, "%s/%s", ns, name);
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

struct route_snapshot *route_snapshot_new(size_t n_services, size_t n_listeners)
{
    struct route_snapshot *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->services = calloc(n_services ? n_services : 1, sizeof(*s->services));
    s->listeners = calloc(n_listeners ? n_listeners : 1, sizeof(*s->listeners));
    if (!s->services || !s->listeners) {
        free(s->services);
        free(s->listeners);
        free(s);
        return NULL;
    }
    s->n_services = n_services;
    s->n_listeners = n_listeners;
    atomic_init(&s->refs, 1);
    return s;
}

/* FNV-1a over "ns/name" without building the string. */
static uint32_t name_hash(const char *ns, size_t ns_len, const char *name, size_t name_len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < ns_len; i++)
        h = (h ^ (unsigned char)ns[i]) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (size_t i = 0; i < name_len; i++)
        h = (h ^ (unsigned char)name[i]) * 16777619u;
    return h;
}

int route_snapshot_seal(struct route_snapshot *s)
{
    size_t size = 16;
    while (size < s->n_services * 2)
        size *= 2;
    s->index = calloc(size, sizeof(*s->index));
    if (!s->index)
        return -1;
    s->index_size = size;
    for (size_t i = 0; i < s->n_services; i++) {
        const struct svc_state *svc = s->services[i].svc;
        uint32_t h = name_hash(svc->ns, strlen(svc->ns), svc->name, strlen(svc->name));
        size_t slot = h & (size - 1);
        while (s->index[slot])
            slot = (slot + 1) & (size - 1);
        s->index[slot] = (uint32_t)i + 1;
    }
    return 0;
}

const struct route_service *route_snapshot_find(const struct route_snapshot *s, const char *ns,
                                                size_t ns_len, const char *name, size_t name_len)
{
    if (!s || !s->index)
        return NULL;
    size_t mask = s->index_size - 1;
    for (size_t slot = name_hash(ns, ns_len, name, name_len) & mask; s->index[slot];
         slot = (slot + 1) & mask) {
        const struct route_service *r = &s->services[s->index[slot] - 1];
        if (strlen(r->svc->ns) == ns_len && memcmp(r->svc->ns, ns, ns_len) == 0 &&
            strlen(r->svc->name) == name_len && memcmp(r->svc->name, name, name_len) == 0)
            return r;
    }
    return NULL;
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
    for (size_t i = 0; i < s->n_services; i++) {
        struct route_service *r = &s->services[i];
        if (r->svc)
            svc_state_unref(r->svc);
        route_probes_unref(r->probes);
        for (size_t p = 0; r->ports && p < r->n_ports; p++) {
            free(r->ports[p].name);
            free(r->ports[p].endpoints);
        }
        free(r->ports);
        free(r->reason);
    }
    free(s->services);
    free(s->listeners);
    free(s->index);
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
