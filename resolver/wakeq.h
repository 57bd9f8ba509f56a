/*
 * wakeq: the seam from the workers to the control plane. Workers (many producers) push
 * "service X needs a pod" and "backend Y of service X refused a connection"; the control
 * thread (one consumer) is notified through an event on its own base and takes everything
 * queued at once. Wakes are deduplicated per service: while one sits in the queue, further
 * wakes of that service are dropped. Pushing never blocks beyond one short mutex.
 */
#ifndef HOLDFAST_WAKEQ_H
#define HOLDFAST_WAKEQ_H

#include <pthread.h>
#include <stdbool.h>

#include "common/addr.h"
#include "resolver/dataplane.h"
#include "resolver/route.h"

struct event;

struct wakeq {
    pthread_mutex_t mu;
    struct wake_msg *head, *tail;
    struct event *notify; /* made active on push; may be NULL (tests) */
};

void wakeq_init(struct wakeq *q, struct event *notify);
void wakeq_set_notify(struct wakeq *q, struct event *notify);

/* Destroys the queue, freeing any messages left. */
void wakeq_destroy(struct wakeq *q);

/* Queues a wake for svc unless one is already queued. Returns true when it was queued. */
bool wakeq_push_wake(struct wakeq *q, struct svc_state *svc);

/* Queues a backend failure report (not deduplicated: each is a distinct fact). */
void wakeq_push_failure(struct wakeq *q, struct svc_state *svc, const struct addr *backend);

/* Takes every queued message, oldest first; the caller frees each with wake_msg_free. A wake
 * taken here clears the service's pending flag, so the next wake is queued again. */
struct wake_msg *wakeq_take_all(struct wakeq *q);

#endif
