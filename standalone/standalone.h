/*
 * standalone: the control plane of `holdfast run --config FILE`, without Kubernetes.
 *
 * It publishes route snapshots through the same seam the Kubernetes controller uses (so the
 * data plane has one code path), consumes the wake queue, runs each service's wake command
 * when a held connection needs it and none of that service's wake processes is alive (output
 * to the log, exit status logged), and probes backend readiness (tcp connect, or an HTTP GET
 * answered 200-399) every readinessPeriodMs while connections are held. A backend that
 * refuses a connection is marked not ready, and probed (and woken) again.
 *
 * Runs on the control thread's event base; owns the wake processes (their process groups get
 * SIGTERM when holdfast stops).
 */
#ifndef HOLDFAST_STANDALONE_H
#define HOLDFAST_STANDALONE_H

#include <stddef.h>

#include "common/metrics.h"
#include "resolver/dataplane.h"
#include "standalone/config.h"

struct event_base;
struct standalone;

/*
 * Opens every listener (all or nothing: an address in use fails here with its JSON path),
 * publishes the first snapshot and starts the initial readiness probes. `cfg` must outlive
 * the result. Returns NULL with a message in err.
 */
struct standalone *standalone_start(struct event_base *base, struct dataplane *dp,
                                    struct config *cfg, char *err, size_t errlen);

/* The wake queue has messages (called on the control thread). */
void standalone_on_wake(struct standalone *sa);

/* Metric families of standalone mode (wake command runs and exits, probe results). */
void standalone_metrics(struct mtext *out, void *sa);

/* Stops probing and terminates the wake processes' process groups. */
void standalone_free(struct standalone *sa);

#endif
