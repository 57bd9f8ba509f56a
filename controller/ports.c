/*
 * ports: the resolver port allocator. See ports.h.
 */
#include "controller/ports.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ports_init(struct ports *p, unsigned min, unsigned max)
{
    memset(p, 0, sizeof(*p));
    p->min = min;
    p->max = max;
    p->refs = calloc(65536, sizeof(*p->refs));
    return p->refs ? 0 : -1;
}

void ports_free(struct ports *p)
{
    free(p->refs);
    p->refs = NULL;
}

void ports_hold(struct ports *p, const struct port_map *m, size_t n, int delta)
{
    for (size_t i = 0; p->refs && i < n; i++) {
        unsigned rp = m[i].resolver_port;
        if (rp == 0 || rp > 65535)
            continue;
        if (delta > 0 && p->refs[rp] < UINT16_MAX)
            p->refs[rp]++;
        else if (delta < 0 && p->refs[rp] > 0)
            p->refs[rp]--;
    }
}

int ports_allocate(struct ports *p, struct port_map *want, size_t n, const struct port_map *have,
                   size_t n_have, char *err, size_t errlen)
{
    unsigned span = p->max - p->min + 1;
    for (size_t i = 0; i < n; i++) {
        struct port_map *m = &want[i];
        m->resolver_port = 0;
        for (size_t k = 0; k < n_have; k++) {
            if (strcmp(have[k].name, m->name) == 0)
                m->resolver_port = have[k].resolver_port;
        }
        for (unsigned tries = 0; !m->resolver_port && tries < span && p->refs; tries++) {
            unsigned cand = p->min + (p->cursor + tries) % span;
            bool used = p->refs[cand] > 0;
            for (size_t k = 0; k < i && !used; k++)
                used = want[k].resolver_port == cand;
            if (!used) {
                m->resolver_port = cand;
                p->cursor = (p->cursor + tries + 1) % span;
            }
        }
        if (!m->resolver_port) {
            snprintf(err, errlen, "no free resolver port in %u-%u", p->min, p->max);
            return -1;
        }
    }
    return 0;
}
