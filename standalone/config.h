/*
 * config: the standalone configuration file (`holdfast run --config FILE`), JSON.
 *
 *   {
 *     "services": [{
 *       "namespace": "default", "name": "hello",
 *       "listen": ["127.0.0.1:18080"], "backends": ["127.0.0.1:19080"],
 *       "protocol": "http",
 *       "wake": {"command": ["/bin/sh", "-c", "exec python3 -m http.server 19080"]},
 *       "readiness": {"httpGet": {"path": "/"}},
 *       "readinessPeriodMs": 100, "holdTimeoutSeconds": 600, "maxHeldConnections": 10000,
 *       "maxHeldBytes": 67108864,
 *       "probeResponse": [],
 *       "waitingPage": {"enabled": true, "retryAfterSeconds": 2, "html": "<!DOCTYPE html>..."}
 *     }],
 *     "shared": {"listen": ["127.0.0.1:8012"]},
 *     "limits": {
 *       "maxHeldConnections": 50000, "maxHeldBytes": 268435456, "holdBufferBytes": 65536,
 *       "maxHeadBytes": 32768, "headTimeoutSeconds": 30, "idleTimeoutSeconds": 0,
 *       "connectTimeoutMs": 2000
 *     }
 *   }
 *
 * Unknown keys are rejected. Every error names the file, the JSON path and what is wrong:
 * "hello.json: services[1].probeResponse[0].path.type: must be one of Exact, PathPrefix,
 * RegularExpression".
 */
#ifndef HOLDFAST_CONFIG_H
#define HOLDFAST_CONFIG_H

#include <stddef.h>
#include "common/addr.h"
#include "resolver/dataplane.h"

enum readiness_kind {
    READINESS_TCP,      /* a backend is ready when a TCP connect succeeds (the default) */
    READINESS_HTTP_GET, /* ready when GET path answers 200-399, as the kubelet decides */
};

struct config_service {
    char *namespace_;    /* "default" when omitted */
    char *name;          /* required */
    struct addr *listen; /* n_listen >= 1 */
    size_t n_listen;
    struct addr *backends; /* n_backends >= 1 */
    size_t n_backends;
    enum svc_protocol protocol;
    char **wake_argv; /* NULL-terminated, or NULL when no wake command */
    enum readiness_kind readiness;
    char *readiness_path;         /* for READINESS_HTTP_GET, default "/" */
    unsigned readiness_period_ms; /* default 1000 */
    unsigned hold_timeout_s;      /* default 600 */
    size_t max_held_connections;  /* default 10000 */
    size_t max_held_bytes;        /* default 64 MiB */
    struct route_probes *probes;  /* never NULL after config_load (may hold no rule); one
                                   * reference, which the routes share */
    /* waitingPage: what a browser navigation gets while no backend is ready (off by default) */
    struct waiting_page_spec waiting_page;
};

struct config {
    struct config_service *services;
    size_t n_services;
    struct addr *shared_listen; /* shared Host-routed ports (compatibility), may be empty */
    size_t n_shared_listen;
    struct dp_limits limits;
};

/*
 * Reads and validates FILE. Returns 0 and a config the caller frees with config_free(), or -1
 * with one message in err ("FILE: JSON.path: what is wrong"; for malformed JSON, the line
 * and column). Duplicate namespace/name pairs and a listen address used twice are errors.
 */
int config_load(const char *file, struct config **out, char *err, size_t errlen);

/* Same, from a string; `source` names it in messages. */
int config_parse(const char *json, const char *source, struct config **out, char *err,
                 size_t errlen);

void config_free(struct config *cfg);

#endif
