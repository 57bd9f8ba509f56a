/*
 * addr: parsing and printing socket addresses. See addr.h.
 */
#include "common/addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int addr_format(char *buf, size_t len, const char *ip, unsigned port)
{
    int n = snprintf(buf, len, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

/* Fills a->text from a->ss. */
static void addr_set_text(struct addr *a)
{
    char ip[INET6_ADDRSTRLEN];
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof(ip));
        addr_format(a->text, sizeof(a->text), ip, ntohs(s6->sin6_port));
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(ip));
        addr_format(a->text, sizeof(a->text), ip, ntohs(s4->sin_port));
    }
}

int addr_parse(const char *text, struct addr *out, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *port_str;
    memset(out, 0, sizeof(*out));

    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':') {
            snprintf(err, errlen, "\"%s\": expected [IPv6]:PORT", text);
            return -1;
        }
        size_t hlen = (size_t)(close - text - 1);
        if (hlen >= sizeof(host)) {
            snprintf(err, errlen, "\"%s\": not a numeric IP address", text);
            return -1;
        }
        memcpy(host, text + 1, hlen);
        host[hlen] = '\0';
        port_str = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon) {
            snprintf(err, errlen, "\"%s\": missing port (expected HOST:PORT)", text);
            return -1;
        }
        size_t hlen = (size_t)(colon - text);
        if (hlen >= sizeof(host) || memchr(text, ':', hlen)) {
            snprintf(err, errlen, "\"%s\": IPv6 addresses are written [IP]:PORT", text);
            return -1;
        }
        memcpy(host, text, hlen);
        host[hlen] = '\0';
        port_str = colon + 1;
    }

    char *end;
    long port = strtol(port_str, &end, 10);
    if (!*port_str || *end || port < 0 || port > 65535) {
        snprintf(err, errlen, "\"%s\": port must be a number from 0 to 65535", text);
        return -1;
    }

    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_ANY);
        s4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*s4);
    } else if (strcmp(host, "localhost") == 0) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*s4);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
        if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
            s4->sin_family = AF_INET;
            s4->sin_port = htons((uint16_t)port);
            out->len = sizeof(*s4);
        } else if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
            s6->sin6_family = AF_INET6;
            s6->sin6_port = htons((uint16_t)port);
            out->len = sizeof(*s6);
        } else {
            snprintf(err, errlen, "\"%s\": \"%s\" is not a numeric IP address or localhost", text,
                     host);
            return -1;
        }
    }
    addr_set_text(out);
    return 0;
}

void addr_from_sockaddr(const struct sockaddr *sa, socklen_t len, struct addr *out)
{
    memset(out, 0, sizeof(*out));
    if (len > sizeof(out->ss))
        len = sizeof(out->ss);
    memcpy(&out->ss, sa, len);
    out->len = len;
    addr_set_text(out);
}

bool addr_equal(const struct addr *a, const struct addr *b)
{
    if (a->ss.ss_family != b->ss.ss_family)
        return false;
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss;
        const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->ss;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss;
    const struct sockaddr_in *y = (const struct sockaddr_in *)&b->ss;
    return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
}

unsigned addr_port(const struct addr *a)
{
    if (a->ss.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}
