/*
 * pace: how fast released held connections go to one backend endpoint.
 *
 * When a cold app starts listening, every held connection is ready to go at once. Thousands of
 * connects onto a listen backlog of 128 overflow it: the kernel drops the SYNs it has no room
 * for, and those connections wait for the SYN retransmit (1 s, then 3 s more). bench/hold
 * measured 5,000 held connections released onto a backlog of 128: 3,032 listen overflows and a
 * p99 of 3.1 s to the first answer (bench/RESULTS.md, issue 14 part 2).
 *
 * So released held connections go through a window per endpoint, as TCP's congestion window
 * does: at most `limit` of them are outstanding (connecting, or connected without the
 * backend's first byte yet; on tcp ports, where the server may never speak first, until the
 * connect completes). Connected-but-unanswered counts because it is what sits in the app's
 * accept queue. The limit starts below a common backlog (PACE_INITIAL_WINDOW, all workers
 * together) and doubles each time a window's worth was answered (slow start), up to
 * PACE_SLOW_START_GROWTH times where it started; past that it grows by an eighth per window
 * answered (congestion avoidance), so an app that keeps up is fed ever faster but a burst
 * never outgrows what it just took by much. A connect still pending after PACE_LOSS_MS had its
 * SYN dropped (a SYN-ACK takes well under a millisecond in a cluster; the retransmit comes
 * only at 1 s): the backlog overflowed, so the limit halves and grows by an eighth from there. A
 * full window whose connections all connected but none was answered for PACE_STALL_MS doubles too:
 * slow requests do not hold the rest forever.
 *
 * One window per worker and endpoint (kept with the worker's endpoint loads, pick.h): no
 * sharing, no atomics. Each worker starts at its share of PACE_INITIAL_WINDOW, so the sum over
 * the workers starts at the bound. A window starts again (pace_reset) when its endpoint left
 * the route and comes back: a new pod, or one that restarted.
 *
 * Pure bookkeeping: the caller passes the time and acts on the answers (conn.c).
 */
#ifndef HOLDFAST_PACE_H
#define HOLDFAST_PACE_H

#include <stdbool.h>
#include <stdint.h>

/* The first window of an endpoint, all workers together: below a listen backlog of 128. */
#define PACE_INITIAL_WINDOW 64
/* Slow start doubles the window up to this many times its start (2: 128 all workers). */
#define PACE_SLOW_START_GROWTH 2
/* The window grows no further (a backlog cannot be larger than 65535; this is far past any
 * useful burst). */
#define PACE_MAX_WINDOW 16384
/* A connect pending this long had its SYN dropped: the backlog overflowed. */
#define PACE_LOSS_MS 100
/* A full window, all connected, with no answer for this long doubles. */
#define PACE_STALL_MS 1000

/* How a taken connection stopped being outstanding. */
enum pace_end {
    PACE_ANSWERED, /* the backend's first byte (a tcp port: connected) */
    PACE_LOST,     /* the connect timed out: the backlog overflowed (pace_lost) */
    PACE_GONE,     /* anything else: refused, closed before an answer; only the slot is freed */
};

struct pace_window {
    unsigned limit;       /* connections allowed outstanding, >= 1 */
    unsigned ssthresh;    /* at or above it the limit grows by an eighth, below it doubles */
    unsigned outstanding; /* connections taken and not finished */
    unsigned connecting;  /* of those, not connected yet */
    unsigned answered;    /* answers since the limit last changed */
    uint64_t progress_ns; /* the last answer or change of the limit (monotonic) */
    uint64_t loss_ns;     /* the last halving: losses of the same burst halve once */
};

/* A worker's share of PACE_INITIAL_WINDOW: PACE_INITIAL_WINDOW / nworkers, at least 1. */
unsigned pace_initial(int nworkers);

/* Starts p's window again at `initial` (an endpoint new in the route). Connections still
 * outstanding stay counted. */
void pace_reset(struct pace_window *p, unsigned initial, uint64_t now_ns);

/* Takes a slot for one connection about to connect: true (counted outstanding and connecting)
 * when the window has room. A stalled full window (see above) doubles first. */
bool pace_take(struct pace_window *p, uint64_t now_ns);

/* A taken connection's connect completed. */
void pace_connected(struct pace_window *p);

/* A taken connection's connect is pending after PACE_LOSS_MS: its SYN was dropped. The window
 * halves (once per burst: losses within PACE_LOSS_MS of the last halving do not count). */
void pace_lost(struct pace_window *p, uint64_t now_ns);

/* A taken connection is no longer outstanding; `connecting`: its connect had not completed. */
void pace_finish(struct pace_window *p, bool connecting, enum pace_end how, uint64_t now_ns);

/* When a full window would grow by itself (progress_ns + PACE_STALL_MS), if it stalls. */
uint64_t pace_stall_at(const struct pace_window *p);

#endif
