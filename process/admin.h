/*
 * admin: the admin HTTP listener (default :8013) on the control thread's event base:
 * /metrics (Prometheus text format), /healthz (the process is alive), /readyz (every worker
 * runs the current route snapshot and the process is not draining).
 *
 * When the process runs out of file descriptors the listener pauses, as the data plane's do:
 * it is tried again every 100 ms, each episode is logged once and counted as
 * holdfast_accept_fd_exhausted_total{listener="admin"}.
 */
#ifndef HOLDFAST_ADMIN_H
#define HOLDFAST_ADMIN_H

#include <stdbool.h>

#include "common/addr.h"
#include "resolver/dataplane.h"

struct event_base;
struct admin;

/* Extra metric families a module adds to /metrics (the controller, standalone mode). */
typedef void (*admin_metrics_fn)(struct mtext *out, void *arg);

/* Starts listening on addr. Returns NULL with a message in err when it cannot. */
struct admin *admin_start(struct event_base *base, const struct addr *addr, struct dataplane *dp,
                          char *err, size_t errlen);

/* Adds a producer of more metric families, called on every scrape. */
void admin_add_metrics(struct admin *a, admin_metrics_fn fn, void *arg);

/* The control plane's readiness, ANDed into /readyz (Kubernetes mode: caches synced and routed). */
typedef bool (*admin_ready_fn)(void *arg);
void admin_set_ready_check(struct admin *a, admin_ready_fn fn, void *arg);

/* /healthz fails (503, with why in the body) while fn says false: the control loop is wedged,
 * so the kubelet restarts the process. NULL: /healthz answers 200 while the loop runs. */
typedef bool (*admin_health_fn)(void *arg, char *why, size_t len);
void admin_set_health_check(struct admin *a, admin_health_fn fn, void *arg);

void admin_free(struct admin *a);

#endif
