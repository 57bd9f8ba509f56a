/*
 * wakeq: see wakeq.h.
 */
#include "resolver/wakeq.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

void wakeq_init(struct wakeq *q, struct event *notify)
{
    pthread_mutex_init(&q->mu, NULL);
    q->head = q->tail = NULL;
    q->notify = notify;
}

void wakeq_set_notify(struct wakeq *q, struct event *notify)
{
    pthread_mutex_lock(&q->mu);
    q->notify = notify;
    pthread_mutex_unlock(&q->mu);
}

void wakeq_destroy(struct wakeq *q)
{
    struct wake_msg *m = q->head;
    while (m) {
        struct wake_msg *next = m->next;
        wake_msg_free(m);
        m = next;
    }
    q->head = q->tail = NULL;
    pthread_mutex_destroy(&q->mu);
}

static void push(struct wakeq *q, struct wake_msg *m)
{
    pthread_mutex_lock(&q->mu);
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    if (q->notify)
        event_active(q->notify, EV_READ, 0);
    pthread_mutex_unlock(&q->mu);
}

bool wakeq_push_wake(struct wakeq *q, struct svc_state *svc)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&svc->wake_pending, &expected, 1))
        return false;
    struct wake_msg *m = calloc(1, sizeof(*m));
    if (!m) {
        atomic_store(&svc->wake_pending, 0);
        return false;
    }
    m->kind = WAKE_NEEDED;
    m->svc = svc_state_ref(svc);
    push(q, m);
    return true;
}

void wakeq_push_failure(struct wakeq *q, struct svc_state *svc, const struct addr *backend)
{
    struct wake_msg *m = calloc(1, sizeof(*m));
    if (!m)
        return; /* the connection is retried anyway; the report is an optimisation */
    m->kind = WAKE_BACKEND_FAILED;
    m->svc = svc_state_ref(svc);
    m->backend = *backend;
    push(q, m);
}

struct wake_msg *wakeq_take_all(struct wakeq *q)
{
    pthread_mutex_lock(&q->mu);
    struct wake_msg *m = q->head;
    q->head = q->tail = NULL;
    pthread_mutex_unlock(&q->mu);
    for (struct wake_msg *i = m; i; i = i->next) {
        if (i->kind == WAKE_NEEDED)
            atomic_store(&i->svc->wake_pending, 0);
    }
    return m;
}

void wake_msg_free(struct wake_msg *m)
{
    if (!m)
        return;
    svc_state_unref(m->svc);
    free(m);
}
