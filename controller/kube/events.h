/*
 * events: Kubernetes Events (core/v1 `events`, the form `kubectl describe` and `kubectl get
 * events` show) about the objects a controller acts on: ScaledToZero, ScaledUp, ScaleUpFailed...
 *
 * Recording never blocks and never fails the caller: events_record builds the Event and hands it
 * to the kube client; failures are logged (at most one warning per 10 s, with the number left
 * unlogged) and counted.
 *
 * Like client-go's recorder, repeats are aggregated: the same (involved object, type, reason,
 * message) recorded again within the window (10 minutes) PATCHes the existing Event's count and
 * lastTimestamp instead of creating another object. A small LRU cache (default 4096 entries)
 * remembers the Events written; a patch answered NotFound (the Event expired, or was deleted)
 * creates a new one. Repeats that arrive while the Event's create or patch is in flight are
 * folded into one patch sent when it returns.
 *
 * An Event is named "<object name>.<16 hex digits of the wall clock in ns>" (client-go's form),
 * the object name cut so the whole fits 253 characters; it lives in the object's namespace
 * ("default" for cluster-scoped objects), as the API server requires. source.component is the
 * component, source.host and reportingInstance the pod name. Messages longer than 1024 bytes are
 * cut (the events.k8s.io limit) at a UTF-8 character boundary.
 *
 * At most 256 writes are in flight; beyond that new Events are dropped (counted and logged), so
 * an unreachable API server cannot make memory grow.
 *
 * Thread model: the control thread's event_base (the kube client's); not thread-safe.
 */
#ifndef HOLDFAST_EVENTS_H
#define HOLDFAST_EVENTS_H

#include <stdbool.h>
#include <stddef.h>

struct kube_client;
struct events;

#define EVENTS_NAME_MAX 253     /* metadata.name limit (DNS subdomain) */
#define EVENTS_MESSAGE_MAX 1024 /* bytes of message kept */

enum events_type {
    EVENTS_NORMAL,  /* "Normal" */
    EVENTS_WARNING, /* "Warning" */
};

/* The involved object (an ObjectReference). Strings are borrowed for the call. */
struct events_object {
    const char *api_version;      /* "elasti.truefoundry.com/v1alpha1", "apps/v1" (required) */
    const char *kind;             /* "ElastiService" (required) */
    const char *ns;               /* namespace, NULL or "" for cluster-scoped objects */
    const char *name;             /* metadata.name (required) */
    const char *uid;              /* metadata.uid, or NULL (then the key is kind/ns/name) */
    const char *resource_version; /* metadata.resourceVersion, or NULL */
};

/* Settings. Strings are copied by events_new. Zero fields take the defaults, but for component. */
struct events_opts {
    const char *component;            /* source.component: the controller's name (required) */
    const char *reporting_controller; /* reportingComponent (default: the component) */
    const char *instance;             /* source.host and reportingInstance: the pod name
                                       * (default: the host name) */
    size_t cache_size;                /* Events remembered for aggregation (default 4096) */
    long window_s;                    /* aggregation window in seconds (default 600) */
};

/* What happened so far (for tests and metrics). */
struct events_stats {
    unsigned long created;   /* Events created */
    unsigned long patched;   /* aggregation patches that succeeded */
    unsigned long recreated; /* patches answered NotFound, created anew */
    unsigned long failed;    /* writes that failed (the occurrence is lost) */
    unsigned long dropped;   /* records dropped because too many writes were in flight */
    size_t in_flight;        /* writes in flight now */
    size_t cached;           /* cache entries now */
};

/* Called by events_flush when every write in flight has ended, or at the timeout: `drained` is
 * false when writes were still in flight. */
typedef void (*events_flushed_fn)(bool drained, void *arg);

/* A recorder on `c` (borrowed; it must outlive the recorder). NULL when out of memory or
 * without opts->component. */
struct events *events_new(struct kube_client *c, const struct events_opts *opts);

/* Records one occurrence: creates the Event or bumps the count of the same Event recorded within
 * the window. `message` is a printf format. Returns 0 when a write was started or folded into
 * one in flight, -1 when the Event was dropped (invalid object, too many writes in flight, out
 * of memory; logged, rate-limited). Never blocks. */
int events_record(struct events *ev, const struct events_object *obj, enum events_type type,
                  const char *reason, const char *message, ...)
    __attribute__((format(printf, 5, 6)));

/* Calls `done` (from the loop, never before this returns) once no write is in flight, or after
 * timeout_ms. Records made meanwhile are still sent. One flush at a time: a second call replaces
 * the first's callback, which then never runs. */
void events_flush(struct events *ev, long timeout_ms, events_flushed_fn done, void *arg);

void events_get_stats(const struct events *ev, struct events_stats *out);

/* Cancels writes in flight (they are lost; no callbacks) and frees ev. */
void events_free(struct events *ev);

/* Writes the Event name for object `name` and the unique suffix `unique` into buf
 * (EVENTS_NAME_MAX + 1 bytes suffice): "<name>.<%016llx unique>", the name cut so the whole
 * fits 253 characters, without a '-' or '.' left before the dot. Returns 0, or -1 when len is
 * too small. */
int events_name(const char *name, unsigned long long unique, char *buf, size_t len);

/* Cuts s in place to at most `max` bytes without splitting a UTF-8 sequence. Returns the new
 * length. */
size_t events_truncate_utf8(char *s, size_t max);

#endif
