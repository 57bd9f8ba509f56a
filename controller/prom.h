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
#include <stdint.h>
#include <time.h>

struct event_base;
struct http_client;

#define PROM_DEFAULT_UPTIME_FILTER "container=\"prometheus\""
#define PROM_TIMEOUT_MS 5000
#define PROM_DEFAULT_MAX_INFLIGHT 8 /* queries in flight to one Prometheus server at a time */

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

/*
 * prom_hub: the controller's queries, shared and paced (issue 13, "Prometheus budget").
 *
 * A query is identified by its server address, its request headers and its text (the
 * trigger's query, or an uptime query, which carries the filter and the cooldown). An ask for
 * a query that is queued or in flight waits for that query's answer; an ask for a query whose
 * answer is fresh enough gets that answer; only otherwise is a query sent. "Fresh enough": the
 * query was sent less than `share_ms` ago (the controller passes its polling interval) and
 * after the asker's `fresh_after_ms` (the controller passes when that ElastiService's previous
 * evaluation had all its answers, so no evaluation is decided on an answer its previous one
 * could have seen). Every answer, errors included, is shared the same way.
 *
 * At most `max_inflight` queries are in flight to one server address; the rest wait in order
 * of asking (each in-flight query ends within PROM_TIMEOUT_MS). A query that waited
 * PROM_TIMEOUT_MS for a slot is not sent: its askers get PROM_UNREACHABLE ("not sent within
 * ..."), so an evaluation still ends within about twice PROM_TIMEOUT_MS however slow the server.
 */
struct prom_hub;
struct prom_ask;

/* Called for each ask still waiting when the hub is freed: frees what `arg` holds. */
typedef void (*prom_drop_fn)(void *arg);

struct prom_hub *prom_hub_new(struct event_base *base, struct http_client *http,
                              unsigned max_inflight, uint64_t share_ms, prom_drop_fn drop);

/* Cancels every query (no `done` runs; `drop` is called for each waiting ask) and frees. */
void prom_hub_free(struct prom_hub *h);

/*
 * Asks for `query` with t's server address and headers (see above). `done` is called once,
 * later (never from inside this call), with the judged answer. `fresh_after_ms` is a
 * CLOCK_MONOTONIC time in ms (0: any answer younger than share_ms). Returns NULL when out of
 * memory (then `done` is not called).
 */
struct prom_ask *prom_hub_ask(struct prom_hub *h, const struct prom_trigger *t, const char *query,
                              uint64_t fresh_after_ms, prom_done_fn done, void *arg);

struct prom_hub_stats {
    uint64_t sent;   /* queries sent to Prometheus (holdfast_prometheus_queries_total) */
    uint64_t shared; /* asks answered by a query sent for another ask
                        (holdfast_prometheus_answers_shared_total) */
    size_t queued;   /* queries waiting for a free slot under max_inflight */
    size_t inflight; /* queries in flight, over every server */
};

void prom_hub_stats(const struct prom_hub *h, struct prom_hub_stats *out);

/* How long a query may wait for a slot (default PROM_TIMEOUT_MS); for tests. */
void prom_hub_set_queue_max(struct prom_hub *h, uint64_t ms);

#endif
