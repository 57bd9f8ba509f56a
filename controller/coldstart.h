/*
 * coldstart: the phases of one cold start (a wake), as pure functions over times and cJSON (no
 * controller, no I/O). The leader collects the moments of a wake from three sources: its data
 * plane (the first held request and the first held byte written, monotonic), its own scale call
 * (sent and answered), and one pod list at the switch to serve (the woken pod's creation,
 * scheduling, containers' start and Ready, wall-clock seconds from the pod's status). All are
 * kept as wall-clock milliseconds here; the caller converts monotonic times once
 * (coldstart_mono_to_wall_ms). From them: status.lastColdStart (coldstart_status), the
 * one-line breakdown of the Event (coldstart_breakdown) and the durations between consecutive
 * known phases that feed holdfast_cold_start_phase_seconds (coldstart_durations).
 *
 * With early readiness the held connections go to a pod before the kubelet marks it Ready: the
 * phases are then in the order held, ..., containersStarted, earlyReady, firstByte, ready (the
 * kubelet's Ready comes after the first byte), and the total ends at the first byte.
 */
#ifndef HOLDFAST_CONTROLLER_COLDSTART_H
#define HOLDFAST_CONTROLLER_COLDSTART_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

/* The moments of a cold start, in the order they happen. */
enum cold_phase {
    COLD_HELD,               /* the first request held (the start, when known) */
    COLD_SCALE_SENT,         /* the scale call sent */
    COLD_SCALE_ANSWERED,     /* the scale call answered */
    COLD_POD_CREATED,        /* the pod's metadata.creationTimestamp */
    COLD_POD_SCHEDULED,      /* its PodScheduled condition's lastTransitionTime */
    COLD_CONTAINERS_STARTED, /* the latest state.running.startedAt of its containers */
    COLD_EARLY_READY,        /* a pod passed holdfast's own run of its probes (early.c) */
    COLD_READY,              /* its Ready condition's lastTransitionTime (kubelet Ready) */
    COLD_FIRST_BYTE,         /* the first held byte written to the pod */
    COLD_N
};

/* The moments known, wall-clock milliseconds since the Unix epoch; -1: unknown. */
struct coldstart {
    int64_t at_ms[COLD_N];
};

/* All moments unknown. */
void coldstart_init(struct coldstart *cs);

/* The name of a phase in status.lastColdStart.phases ("scaleSent", ...; COLD_HELD: "held"). */
const char *coldstart_phase_name(enum cold_phase p);
/* Its value of the phase label of holdfast_cold_start_phase_seconds ("scale_sent", ...). */
const char *coldstart_phase_label(enum cold_phase p);

/* A monotonic time (ns) as wall-clock ms, given the clocks read now (mono_now_ns, wall_now_ns). */
int64_t coldstart_mono_to_wall_ms(uint64_t mono_ns, uint64_t mono_now_ns, uint64_t wall_now_ns);

/*
 * Reads the pod phases of `pod` (one Pod object) into cs: COLD_POD_CREATED, COLD_POD_SCHEDULED
 * (the condition True), COLD_CONTAINERS_STARTED (every container running: the latest start;
 * any not running, or none listed: unknown), COLD_READY (the condition True). What the pod does
 * not show (or shows malformed) stays unknown. Returns how many of the four were found.
 */
int coldstart_read_pod(struct coldstart *cs, const cJSON *pod);

/*
 * The start of the cold start: the first known moment in phase order (the first held request,
 * else the scale call sent, else the pod's creation, ...); -1 when none is known.
 */
int64_t coldstart_start_ms(const struct coldstart *cs);

/*
 * Each phase's milliseconds from the start (ms[p], -1 unknown; ms[COLD_HELD] is 0 when the
 * start is known). Pod times have one-second resolution (cut, not rounded), so a pod moment
 * that reads earlier than a phase before it is taken as that phase's: the phases never go
 * backwards (in the order they happened: see the top). Returns the total (the first byte's
 * milliseconds, else the last known phase's), or -1 without a start.
 */
int64_t coldstart_phases_ms(const struct coldstart *cs, int64_t ms[COLD_N]);

/*
 * The durations between consecutive known phases (durations_ms[p]: from the known phase before
 * p in the order they happened, or the start, to p; -1 when p is unknown or is the start):
 * they add up to the total, plus, with early readiness, how long the kubelet's Ready came
 * after the first byte (durations_ms[COLD_READY]).
 */
void coldstart_durations(const struct coldstart *cs, int64_t durations_ms[COLD_N]);

/*
 * status.lastColdStart: {startedAt (RFC 3339, milliseconds), totalMs, phases: {scaleSent,
 * scaleAnswered, podCreated, podScheduled, containersStarted, earlyReady, ready, firstByte}}
 * (in the order they happened), each phase
 * the milliseconds from startedAt, absent when unknown. NULL when no moment is known. The
 * caller frees the result.
 */
cJSON *coldstart_status(const struct coldstart *cs);

/*
 * The breakdown in one line, into buf (cut to len - 1): "cold start 41.2 s: scale 0.1 s,
 * scheduling 0.3 s, image pull and container start 35.0 s, readiness 5.6 s, first byte 0.2 s"
 * (the durations between known phases, each named by what it mostly is). Unknown phases are
 * left out; their time is counted in the next known one's.
 */
void coldstart_breakdown(const struct coldstart *cs, char *buf, size_t len);

#endif
