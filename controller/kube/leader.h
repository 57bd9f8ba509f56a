/*
 * leader: leader election on a coordination.k8s.io/v1 Lease, with client-go's semantics.
 *
 * Several replicas of a controller run; only the one holding the Lease acts as the leader (in
 * holdfast: scales down and switches traffic). Each replica is a candidate named by its
 * identity (the pod name, written as spec.holderIdentity).
 *
 * A candidate tries every retry period (jittered by up to 1.2x, as client-go's JitterFactor) to
 * get the Lease:
 *   - it does not exist: create it (AlreadyExists: someone else won the race);
 *   - nobody holds it (holderIdentity ""), or the holder let it expire: update it with the
 *     resourceVersion read (409 Conflict: someone else won the race). Expiry is judged from
 *     when WE saw the record last change plus its leaseDurationSeconds, never from the
 *     holder's renewTime, so clock skew between nodes does not matter (client-go's rule);
 *   - we hold it already (a restart under the same identity): renew it.
 * A takeover increments spec.leaseTransitions and sets spec.acquireTime.
 *
 * The leader renews (updates spec.renewTime) every retry period, writing over the object it
 * wrote last so a renewal is one PUT. If no renewal succeeds for renew_deadline it stops
 * leading (on_stopped_leading) and becomes a candidate again; renew_deadline < lease_duration
 * means it stops before any other candidate can judge the Lease expired. It also stops at once
 * when it reads the Lease held by someone else (a renewal answered 409, then a read showing
 * another holder): two leaders at a time would each scale and switch traffic.
 *
 * On shutdown leader_release hands the Lease back (holderIdentity "", leaseDurationSeconds 1,
 * as client-go's ReleaseOnCancel) so a successor takes over at its next try instead of after
 * the lease duration.
 *
 * Disabled mode (--leader-elect=false): always leader, no Lease is read or written.
 *
 * Times written are MicroTime (RFC 3339 UTC with microseconds, "2026-11-22T14:00:00.123456Z"),
 * as the Lease API requires. Transitions are logged once each (started/stopped leading, new
 * leader); failed tries are logged at warn once per run of failures, then at debug.
 *
 * Thread model: the control thread's event_base (the kube client's); not thread-safe, except
 * leader_is_leader which may be read from any thread.
 */
#ifndef HOLDFAST_LEADER_H
#define HOLDFAST_LEADER_H

#include <stdbool.h>
#include <stddef.h>

struct kube_client;
struct leader;

/* Settings. Strings are copied by leader_new. Zero durations take the defaults. */
struct leader_opts {
    const char *identity;   /* holderIdentity: this replica's pod name (required) */
    const char *ns;         /* Lease namespace (required unless disabled) */
    const char *name;       /* Lease name (required unless disabled) */
    long lease_duration_ms; /* how long a Lease holds without renewal (default 15000) */
    long renew_deadline_ms; /* the leader stops after this long without a renewal (10000) */
    long retry_period_ms;   /* between tries and renewals (default 2000) */
    bool disabled;          /* --leader-elect=false: always leader, no Lease */
};

/* Called on the control thread. Each may be NULL. */
struct leader_callbacks {
    void (*on_started_leading)(void *arg);                  /* we hold the Lease now */
    void (*on_stopped_leading)(void *arg);                  /* we no longer do: stop leader work */
    void (*on_new_leader)(const char *identity, void *arg); /* the observed holder changed
                                                             * (never called with "") */
    void *arg;                                              /* passed to each */
};

/* Called once when leader_release ends: `released` is true when the Lease was handed back,
 * false when there was nothing to release, the write failed, or it timed out. */
typedef void (*leader_released_fn)(bool released, void *arg);

/* A candidate on `c` (borrowed; it must outlive the leader). Nothing happens until
 * leader_start. Returns NULL and writes the reason to err when the options are invalid
 * (missing identity/namespace/name, or not lease_duration > renew_deadline > 1.2 *
 * retry_period). Free with leader_free. */
struct leader *leader_new(struct kube_client *c, const struct leader_opts *opts,
                          const struct leader_callbacks *cb, char *err, size_t errlen);

/* Starts trying to acquire (the first try runs on the next loop turn). In disabled mode,
 * on_started_leading runs on the next loop turn. Returns 0, or -1 when already started. */
int leader_start(struct leader *l);

/* True while this replica leads (always in disabled mode). Any thread. */
bool leader_is_leader(const struct leader *l);

/* Ends the election for shutdown: stops trying; if we lead, runs on_stopped_leading, then hands
 * the Lease back. `done` (may be NULL) runs once, from the loop, within renew_deadline. Call at
 * most once; leader_free afterwards. */
void leader_release(struct leader *l, leader_released_fn done, void *arg);

/* Cancels everything in flight (no callbacks run) and frees l. Does not release the Lease. */
void leader_free(struct leader *l);

/*
 * Takes the Lease `ns/name` for `identity` at once, whoever holds it, for `duration_s` seconds
 * (creating it when missing; a write that loses a race is retried). The replica that led sees a
 * foreign holder at its next renewal (within its retry period) and stops leading; the others
 * wait for the duration. So a one-off job (holdfast's `restore --uninstall`) can act while
 * no replica reconciles. `done` runs once with NULL or the error. False when it could not start.
 */
struct kube_error;
typedef void (*leader_takeover_fn)(const struct kube_error *err, void *arg);
bool leader_take_over(struct kube_client *client, const char *ns, const char *name,
                      const char *identity, long duration_s, leader_takeover_fn done, void *arg);

#endif
