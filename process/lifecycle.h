/*
 * lifecycle: the process's start and stop on the control thread's event loop, around the planes
 * main() wired. At start: "ready" is logged once the data plane runs its first route snapshot.
 * At SIGTERM or SIGINT: /readyz fails at once and the leader Lease is handed back (so another
 * replica takes over); the listeners stay open for the shutdown delay (the endpoint removal
 * still travels to every kube-proxy); then the data plane drains until every connection
 * finished, the Lease is back and the controller is idle, or the drain timeout. A second signal
 * stops at once. Either way the event loop is broken, and main() frees everything.
 */
#ifndef HOLDFAST_LIFECYCLE_H
#define HOLDFAST_LIFECYCLE_H

#include <stdint.h>

struct event_base;
struct dataplane;
struct controller;
struct lifecycle;

/* Arms the signals on base. ctl is NULL in standalone mode. All borrowed: they must outlive the
 * lifecycle. NULL when out of memory. */
struct lifecycle *lifecycle_new(struct event_base *base, struct dataplane *dp,
                                struct controller *ctl, unsigned shutdown_delay_s,
                                unsigned drain_timeout_s);

/* Logs "ready" with the time since started_ns (clock_mono_ns) once the data plane is ready. */
void lifecycle_log_ready(struct lifecycle *l, uint64_t started_ns);

void lifecycle_free(struct lifecycle *l);

#endif
