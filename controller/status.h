/*
 * status: what an ElastiService's status write sends, and how writes and their echoes are
 * told apart, as pure functions over cJSON (no controller, no I/O, the time passed in). The
 * controller keeps its own copy of status.conditions (struct es) and writes status with merge
 * patches, one at a time (es.status_inflight); these functions are the rules it follows:
 *
 *   - the status wanted is derived from the replica's state (status_want), and compared with
 *     what was last written, or shown by the API when it was adopted (status_shown): a write
 *     carries only what differs (status_changes), and none is sent when nothing does, so a
 *     status sync may be asked for at any step (every write comes back as an informer event,
 *     and writing on every reconcile would chase its own echo);
 *   - one write is in flight at a time: a sync asked for meanwhile runs when it is answered,
 *     against the state then (two merge patches in flight at once can be applied in either
 *     order, and the older one applied last left status.mode wrong for good);
 *   - a changed member is sent whole (conditions, ports); every patch carries
 *     observedGeneration and lastReconciledTime (status_patch);
 *   - the resourceVersion a write's answer carries is awaited until the informer shows it, so
 *     older events do not undo the mode and conditions just written; the versions the informer
 *     showed while the write was in flight (a small ring) tell whether its echo, or a later
 *     version still, was already delivered (status_echo, status_seen_*).
 */
#ifndef HOLDFAST_CONTROLLER_STATUS_H
#define HOLDFAST_CONTROLLER_STATUS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The echo of our last status write is given up on after this long (the informer missed it,
 * or a later write replaced it): then any version the informer shows is taken again. */
#define STATUS_AWAIT_ECHO_MS 10000

/* ---- conditions (a status.conditions array) ---- */

/* The condition of this type in conditions (borrowed), or NULL. */
cJSON *status_cond_find(const cJSON *conditions, const char *type);

/* Whether the condition of this type has this reason. */
bool status_cond_reason_is(const cJSON *conditions, const char *type, const char *reason);

/*
 * Sets the condition of this type in conditions (added when absent): status, reason, message
 * (NULL: ""), observedGeneration. lastTransitionTime becomes `now` (wall seconds) only when the
 * status changes. Returns whether status, reason or message changed: a status write is due.
 */
bool status_cond_set(cJSON *conditions, const char *type, bool status, const char *reason,
                     const char *message, int64_t generation, int64_t now);

/* ---- writes: what is wanted, against what was last written ---- */

/*
 * The status a replica wants the API to show, as the members a status write would carry:
 * `mode` (NULL: none of its own to write), `ports` (taken; NULL: none), a copy of conditions
 * with each condition's observedGeneration set to `generation` (every one was evaluated against
 * this generation's spec), observedGeneration, lastScaledUpTime (wall seconds; 0: none), and a
 * copy of wake_with (status.wakeWithReplicas; NULL: none) and of last_cold_start
 * (status.lastColdStart; NULL: none). The caller frees the result.
 */
cJSON *status_want(const char *mode, cJSON *ports, const cJSON *conditions, int64_t generation,
                   int64_t scaled_up, const cJSON *wake_with, const cJSON *last_cold_start);

/*
 * The members of the status `status` (as the API shows it; may be NULL) that status_want
 * produces, copied: what this replica takes as last written when it adopts what the API shows.
 */
cJSON *status_shown(const cJSON *status);

/*
 * The members of want that differ from the member of the same name in written (NULL: nothing
 * known written, so all of them), copied; NULL when none differs: no write is due.
 */
cJSON *status_changes(const cJSON *want, const cJSON *written);

/*
 * The merge patch {"status": ...} for changes (taken; NULL: none) with lastReconciledTime `now`
 * (wall seconds) and observedGeneration `generation` always: a write says the replica looked at
 * this generation now. The caller frees the result.
 */
cJSON *status_patch(cJSON *changes, int64_t generation, int64_t now);

/* ---- echoes ---- */

/* The resourceVersions the informer showed while a status write was in flight: a ring of
 * STATUS_SEEN_RV_RING, "" when unused (a longer one is not kept). */
#define STATUS_SEEN_RV_RING 3
typedef char status_rv[24];

/* Whether the ring (NULL: none) holds rv. */
bool status_seen_has(status_rv *ring, const char *rv);

/* Records rv in the ring at *next (moved on), unless it is there already or too long. */
void status_seen_add(status_rv *ring, unsigned *next, const char *rv);

enum status_echo {
    STATUS_ECHO_NONE,       /* the answer carries no resourceVersion: nothing to await */
    STATUS_ECHO_AWAIT,      /* not shown yet: await it (older events must not undo ours) */
    STATUS_ECHO_DELIVERED,  /* the informer's cache is at the write's version already */
    STATUS_ECHO_SUPERSEDED, /* the echo was shown, and then a later version, both while the
                               write was in flight (when ours counted as newer, theirs was not
                               taken): the cached version is the newest and is taken now */
};

/*
 * What a successful write's answer (its resourceVersion answer_rv, may be NULL) means, given
 * the version the informer caches (cached_rv, may be NULL) and whether the ring of versions
 * seen meanwhile holds answer_rv.
 */
enum status_echo status_echo(const char *answer_rv, const char *cached_rv, bool seen);

/* Whether an event with resourceVersion rv (may be NULL) ends the wait for awaited_rv (set at
 * awaited_ms, mono ms): it is that version, or the wait is past STATUS_AWAIT_ECHO_MS. */
bool status_echo_arrived(const char *awaited_rv, uint64_t awaited_ms, const char *rv,
                         uint64_t now_ms);

#endif
