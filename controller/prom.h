/*
 * prom: ElastiService Prometheus triggers — their metadata, the queries sent to Prometheus'
 * HTTP API (GET /api/v1/query), and how an answer is judged.
 *
 * Same answers as KubeElasti v0.1.30's prometheus scaler for the same trigger and response:
 * the query is evaluated at "now" (`time=` RFC 3339), exactly one series with a finite numeric
 * value is a result, anything else (HTTP error, timeout, undecodable body, empty result, several
 * series, a non-numeric or infinite value) is an error that blocks scale-down. The uptime check
 * is `min_over_time((max(up{<uptimeFilter>}) or vector(0))[<cooldown>s:])` and Prometheus is
 * healthy when it answers 1.
 *
 * Additions (optional): `metadata.headers`, an object of extra request headers, and a default
 * `Authorization` header (from PROMETHEUS_TRIGGER_AUTHORIZATION_HEADER) used when the trigger
 * sets none; a numeric `threshold` is accepted as well as KubeElasti's string.
 */
#ifndef HOLDFAST_PROM_H
#define HOLDFAST_PROM_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct http_client;

#define PROM_DEFAULT_UPTIME_FILTER "container=\"prometheus\""
#define PROM_TIMEOUT_MS 5000

/* One parsed trigger. Every string is owned; free with prom_trigger_clear. */
struct prom_trigger {
    char *server_address; /* "http://prometheus:9090", no trailing slash */
    char *query;          /* the PromQL whose value is compared with threshold */
    double threshold;     /* scale down when the value is below this */
    char *uptime_filter;  /* label matchers inside up{...}; PROM_DEFAULT_UPTIME_FILTER default */
    char **headers;       /* NULL-terminated "Name: value" lines, "Name;" for an empty value
                             (curl's form), as curl takes them; may be just {NULL} */
};

/*
 * Parses one element of spec.triggers ({"type": "prometheus", "metadata": {...}}). `path` names
 * it in messages ("spec.triggers[0]"). `default_server` (may be NULL) is used when metadata has
 * no serverAddress; `default_authorization` (may be NULL) is the value of an Authorization
 * header added when metadata.headers has none. Returns 0, or -1 with one message in err
 * ("spec.triggers[0].metadata.threshold: \"abc\" is not a number").
 */
int prom_trigger_parse(const cJSON *trigger, const char *path, const char *default_server,
                       const char *default_authorization, struct prom_trigger *out, char *err,
                       size_t errlen);

void prom_trigger_clear(struct prom_trigger *t);

/* The uptime query for a filter and cooldown. Caller frees. A cooldown of 0 is sent as 1s: a
 * zero range is not valid PromQL, and the check would otherwise always fail. */
char *prom_uptime_query(const char *uptime_filter, unsigned cooldown_s);

/* The full URL for `query` at `now`: SERVER/api/v1/query?query=<escaped>&time=<RFC3339>.
 * Caller frees; NULL when out of memory. */
char *prom_query_url(const char *server_address, const char *query, time_t now);

enum prom_status {
    PROM_OK,
    PROM_UNREACHABLE,  /* no HTTP answer: refused, timeout, TLS */
    PROM_HTTP_STATUS,  /* an answer other than 200 */
    PROM_BAD_RESPONSE, /* not the API's JSON */
    PROM_EMPTY,        /* no series */
    PROM_MULTIPLE,     /* more than one series */
    PROM_NOT_A_NUMBER, /* value missing, not a string, or not a number */
    PROM_INFINITE,     /* +Inf or -Inf */
};

/* Short name of a status, for conditions' reasons ("PrometheusUnreachable", ...). */
const char *prom_status_reason(enum prom_status st);

/*
 * Judges one /api/v1/query answer. On PROM_OK *value is the sample value; otherwise reason
 * says what was wrong, for a condition message. `http_status` 0 means no answer.
 */
enum prom_status prom_parse_response(long http_status, const char *body, size_t body_len,
                                     double *value, char *reason, size_t reason_len);

/* Called once with the judged answer; `reason` is "" on PROM_OK, borrowed for the call. */
typedef void (*prom_done_fn)(enum prom_status st, double value, const char *reason, void *arg);

struct prom_call; /* one query in flight */

/*
 * Sends `query` (the trigger's own, or its uptime query) to the trigger's server with its
 * headers, timeout PROM_TIMEOUT_MS. `done` is called once, later (never from inside this
 * call). Returns the call, valid until `done` returns, or NULL when it could not start (then
 * `done` is not called).
 */
struct prom_call *prom_query(struct http_client *http, const struct prom_trigger *t,
                             const char *query, prom_done_fn done, void *arg);

/* Stops a call in flight; `done` is never called. Not from within its own `done`. */
void prom_query_cancel(struct prom_call *call);

#endif
