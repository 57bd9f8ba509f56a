/*
 * pace: the per-endpoint window of released held connections. See pace.h.
 */
#include "resolver/pace.h"

#define MS_NS 1000000ull

static void set_limit(struct pace_window *p, unsigned limit, uint64_t now_ns)
{
    p->limit = limit < 1 ? 1 : limit > PACE_MAX_WINDOW ? PACE_MAX_WINDOW : limit;
    p->answered = 0;
    p->progress_ns = now_ns;
}

void pace_lost(struct pace_window *p, uint64_t now_ns)
{
    if (p->loss_ns && now_ns - p->loss_ns < (uint64_t)PACE_LOSS_MS * MS_NS)
        return; /* the same burst's drops: halved already */
    p->loss_ns = now_ns;
    p->ssthresh = p->limit / 2 ? p->limit / 2 : 1;
    set_limit(p, p->ssthresh, now_ns);
}

unsigned pace_initial(int nworkers)
{
    unsigned share = nworkers > 0 ? PACE_INITIAL_WINDOW / (unsigned)nworkers : PACE_INITIAL_WINDOW;
    return share ? share : 1;
}

void pace_reset(struct pace_window *p, unsigned initial, uint64_t now_ns)
{
    p->ssthresh = (initial ? initial : 1) * PACE_SLOW_START_GROWTH;
    p->loss_ns = 0;
    set_limit(p, initial, now_ns);
}

bool pace_take(struct pace_window *p, uint64_t now_ns)
{
    if (p->outstanding >= p->limit && p->connecting == 0 && now_ns >= pace_stall_at(p))
        set_limit(p, p->limit * 2, now_ns);
    if (p->outstanding >= p->limit)
        return false;
    p->outstanding++;
    p->connecting++;
    return true;
}

void pace_connected(struct pace_window *p)
{
    if (p->connecting)
        p->connecting--;
}

void pace_finish(struct pace_window *p, bool connecting, enum pace_end how, uint64_t now_ns)
{
    if (p->outstanding)
        p->outstanding--;
    if (connecting && p->connecting)
        p->connecting--;
    if (how == PACE_LOST) {
        pace_lost(p, now_ns);
        return;
    }
    if (how != PACE_ANSWERED)
        return;
    p->progress_ns = now_ns;
    if (++p->answered < p->limit)
        return;
    if (p->limit < p->ssthresh)
        set_limit(p, p->limit * 2 < p->ssthresh ? p->limit * 2 : p->ssthresh, now_ns);
    else
        set_limit(p, p->limit + (p->limit / 8 ? p->limit / 8 : 1), now_ns);
}

uint64_t pace_stall_at(const struct pace_window *p)
{
    return p->progress_ns + (uint64_t)PACE_STALL_MS * MS_NS;
}
