/*
 * limits: the data plane's process-wide limits and the protocol a service speaks. Both control
 * planes fill these (the standalone config file's "limits" and "protocol", the Kubernetes
 * ElastiService's port protocol); the data plane depends on this header, never on theirs.
 */
#ifndef HOLDFAST_LIMITS_H
#define HOLDFAST_LIMITS_H

#include <stddef.h>

/* How a service's connections are treated while no backend is ready. */
enum svc_protocol {
    PROTO_HTTP, /* HTTP/1.x parsed for probes; h2c and TLS detected and held raw */
    PROTO_TCP,  /* opaque bytes; the wake is queued on accept (server-speaks-first works) */
};

/* Limits that hold across all services, and per-connection sizes. */
struct dp_limits {
    size_t max_held_connections; /* all services together; default 50000 */
    size_t max_held_bytes;       /* all services together; default 256 MiB */
    size_t hold_buffer_bytes;    /* per held connection, then reads stop; default 64 KiB */
    size_t max_head_bytes;       /* request head limit, 431 past it; default 32 KiB */
    unsigned head_timeout_s;     /* complete head within this, else 408; default 30 */
    unsigned idle_timeout_s;     /* relayed connection idle timeout, 0 = none (default) */
    unsigned connect_timeout_ms; /* one backend connect attempt; default 2000 */
};

/* Fills `limits` with the defaults above. */
static inline void dp_limits_default(struct dp_limits *limits)
{
    *limits = (struct dp_limits){
        .max_held_connections = 50000,
        .max_held_bytes = 256 * 1024 * 1024,
        .hold_buffer_bytes = 64 * 1024,
        .max_head_bytes = 32 * 1024,
        .head_timeout_s = 30,
        .idle_timeout_s = 0,
        .connect_timeout_ms = 2000,
    };
}

#endif
