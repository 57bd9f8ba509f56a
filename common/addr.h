/*
 * addr: socket addresses written as text the way operators write them: "127.0.0.1:8080",
 * "[::1]:8080", ":8013" (every IPv4 address) or "localhost:8080". Only numeric addresses and
 * "localhost" are accepted: holdfast never resolves names through DNS.
 */
#ifndef HOLDFAST_ADDR_H
#define HOLDFAST_ADDR_H

#include <stdbool.h>
#include <sys/socket.h>

#define ADDR_TEXT_MAX 64

struct addr {
    struct sockaddr_storage ss; /* the address, AF_INET or AF_INET6 */
    socklen_t len;              /* the length of ss that is in use */
    char text[ADDR_TEXT_MAX];   /* canonical text: "127.0.0.1:80", "[::1]:80" */
};

/*
 * Parses `text` into `out`. Returns 0, or -1 with a reason ("missing port", "port out of
 * range", "not a numeric IP address") written into err.
 */
int addr_parse(const char *text, struct addr *out, char *err, size_t errlen);

/* Fills `out` from a sockaddr (as accept(2) returns it), including the canonical text. */
void addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct addr *out);

/* True when both are the same family, IP and port. */
bool addr_equal(const struct addr *a, const struct addr *b);

/* The port in host byte order. */
unsigned addr_port(const struct addr *a);

/*
 * Writes a numeric IP and a port as operators write them: "10.0.0.1:80", or "[fd00::1]:80" when
 * ip is IPv6 (holds a ':'). Returns 0, or -1 when len is too small (buf holds what fitted).
 * ADDR_TEXT_MAX bytes hold any.
 */
int addr_format(char *buf, size_t len, const char *ip, unsigned port);

#endif
