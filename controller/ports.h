/*
 * ports: the resolver ports of the cluster's ElastiServices. Each Service port of an
 * ElastiService gets a resolver port from the range [min, max] (status.ports), kept for the
 * ElastiService's lifetime under the Service port's name, on which every replica listens.
 * The allocator counts how many ElastiServices hold each port; a port is free at count 0.
 *
 * The search for a free port goes round the range from where the last one ended: a port given
 * up by a deleted ElastiService is the last to be handed out again, so stragglers still sent
 * to it are unlikely to reach another service. Control thread only.
 */
#ifndef HOLDFAST_CONTROLLER_PORTS_H
#define HOLDFAST_CONTROLLER_PORTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A Service port and the resolver port allocated for it (an entry of status.ports). */
struct port_map {
    char name[64];
    char protocol[8]; /* TCP, UDP, SCTP */
    unsigned port;
    unsigned resolver_port; /* 0: none yet */
};

struct ports {
    uint16_t *refs;    /* [65536]: how many ElastiServices hold each resolver port */
    unsigned cursor;   /* where the search for a free port resumes, from min */
    unsigned min, max; /* the range, inclusive */
};

/* Sets up an empty allocator for [min, max] (1 <= min <= max <= 65535). Returns -1 when out of
 * memory. */
int ports_init(struct ports *p, unsigned min, unsigned max);

/* Frees what ports_init allocated. */
void ports_free(struct ports *p);

/* Counts the resolver ports of m[0..n) as held (delta 1) or released (-1); 0 and ports above
 * 65535 are left out (counts stop at 0 and UINT16_MAX). Status ports read from the cluster
 * are held as they are, in range or not, so that none is handed out twice. */
void ports_hold(struct ports *p, const struct port_map *m, size_t n, int delta);

/*
 * Gives every entry of want[0..n) (name, protocol and port filled in) a resolver port: the one
 * the entry of the same name in have[0..n_have) holds (kept for the lifetime; the last such
 * entry when names repeat), else the next free one, never one another entry of want took.
 * Holds nothing: the caller releases have and holds want once it adopts them (ports_hold).
 * Returns 0, or -1 with "no free resolver port in MIN-MAX" in err when the range is full
 * (want then partly filled, the cursor moved past the ports found).
 */
int ports_allocate(struct ports *p, struct port_map *want, size_t n, const struct port_map *have,
                   size_t n_have, char *err, size_t errlen);

#endif
