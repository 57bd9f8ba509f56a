/*
 * prom: Prometheus triggers. See prom.h.
 */
#include "controller/prom.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "controller/http.h"

void prom_trigger_clear(struct prom_trigger *t)
{
    free(t->server_address);
    free(t->query);
    free(t->uptime_filter);
    for (char **h = t->headers; h && *h; h++)
        free(*h);
    free(t->headers);
    memset(t, 0, sizeof(*t));
}

static int fail(char *err, size_t errlen, const char *path, const char *what, const char *detail)
{
    snprintf(err, errlen, "%s.%s%s", path, what, detail);
    return -1;
}

/* Reads a required or optional string member; returns its value, or NULL. */
static const char *string_member(const cJSON *obj, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int parse_threshold(const cJSON *v, const char *path, double *out, char *err, size_t errlen)
{
    if (cJSON_IsNumber(v)) {
        *out = v->valuedouble;
        return 0;
    }
    if (!cJSON_IsString(v))
        return fail(err, errlen, path, "metadata.threshold",
                    ": required, a number written as a string (\"0.5\")");
    char *end;
    const char *s = v->valuestring;
    double d = strtod(s, &end);
    if (!*s || *end || isnan(d)) {
        snprintf(err, errlen, "%s.metadata.threshold: \"%.64s\" is not a number", path, s);
        return -1;
    }
    *out = d;
    return 0;
}

/* Appends "Name: value". An empty (or blank) value is written "Name;": curl takes "Name:" with
 * nothing after the colon as "do not send this header" (and drops its own Accept or Host), while
 * "Name;" sends the header with an empty value, as KubeElasti's Go client does. */
static int add_header(struct prom_trigger *t, size_t *n, const char *name, const char *value)
{
    char **h = realloc(t->headers, (*n + 2) * sizeof(*h));
    if (!h)
        return -1;
    t->headers = h;
    size_t len = strlen(name) + strlen(value) + 3;
    h[*n] = malloc(len);
    if (!h[*n])
        return -1;
    if (value[strspn(value, " \t")] == '\0')
        snprintf(h[*n], len, "%s;", name);
    else
        snprintf(h[*n], len, "%s: %s", name, value);
    (*n)++;
    h[*n] = NULL;
    return 0;
}

int prom_trigger_parse(const cJSON *trigger, const char *path, const char *default_server,
                       const char *default_authorization, struct prom_trigger *out, char *err,
                       size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *type = string_member(trigger, "type");
    if (!type || strcmp(type, "prometheus") != 0)
        return fail(err, errlen, path, "type", ": must be \"prometheus\"");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(trigger, "metadata");
    if (!cJSON_IsObject(md))
        return fail(err, errlen, path, "metadata", ": required, an object");

    const char *query = string_member(md, "query");
    if (!query || !*query)
        return fail(err, errlen, path, "metadata.query", ": required, a PromQL expression");
    const char *server = string_member(md, "serverAddress");
    if (!server || !*server)
        server = default_server;
    if (!server || !*server)
        return fail(err, errlen, path, "metadata.serverAddress",
                    ": required (no default Prometheus address is configured)");
    if (strncmp(server, "http://", 7) != 0 && strncmp(server, "https://", 8) != 0) {
        snprintf(err, errlen,
                 "%s.metadata.serverAddress: \"%.128s\" must start with http:// or "
                 "https://",
                 path, server);
        return -1;
    }
    double threshold;
    if (parse_threshold(cJSON_GetObjectItemCaseSensitive(md, "threshold"), path, &threshold, err,
                        errlen) < 0)
        return -1;
    const char *filter = string_member(md, "uptimeFilter");

    out->server_address = strdup(server);
    out->query = strdup(query);
    out->uptime_filter = strdup(filter && *filter ? filter : PROM_DEFAULT_UPTIME_FILTER);
    out->threshold = threshold;
    out->headers = calloc(1, sizeof(*out->headers));
    if (!out->server_address || !out->query || !out->uptime_filter || !out->headers)
        goto oom;
    size_t len = strlen(out->server_address);
    while (len > 0 && out->server_address[len - 1] == '/')
        out->server_address[--len] = '\0';

    size_t n = 0;
    bool has_auth = false;
    const cJSON *headers = cJSON_GetObjectItemCaseSensitive(md, "headers");
    if (headers && !cJSON_IsObject(headers)) {
        prom_trigger_clear(out);
        return fail(err, errlen, path, "metadata.headers", ": must be an object of strings");
    }
    const cJSON *h;
    cJSON_ArrayForEach(h, headers)
    {
        if (!cJSON_IsString(h) || strpbrk(h->string, ":\r\n") || strpbrk(h->valuestring, "\r\n")) {
            snprintf(err, errlen, "%s.metadata.headers.%.64s: must be a string without line breaks",
                     path, h->string);
            prom_trigger_clear(out);
            return -1;
        }
        if (strcasecmp(h->string, "Authorization") == 0)
            has_auth = true;
        if (add_header(out, &n, h->string, h->valuestring) < 0)
            goto oom;
    }
    if (!has_auth && default_authorization && *default_authorization &&
        add_header(out, &n, "Authorization", default_authorization) < 0)
        goto oom;
    return 0;
oom:
    prom_trigger_clear(out);
    snprintf(err, errlen, "%s: out of memory", path);
    return -1;
}

char *prom_uptime_query(const char *uptime_filter, unsigned cooldown_s)
{
    const char *filter =
        uptime_filter && *uptime_filter ? uptime_filter : PROM_DEFAULT_UPTIME_FILTER;
    size_t len = strlen(filter) + 96;
    char *q = malloc(len);
    if (q)
        snprintf(q, len, "min_over_time((max(up{%s}) or vector(0))[%us:])", filter,
                 cooldown_s ? cooldown_s : 1);
    return q;
}

char *prom_query_url(const char *server_address, const char *query, time_t now)
{
    char *escaped = curl_easy_escape(NULL, query, 0);
    if (!escaped)
        return NULL;
    struct tm tm;
    char ts[32];
    gmtime_r(&now, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
    size_t len = strlen(server_address) + strlen(escaped) + 64;
    char *url = malloc(len);
    if (url)
        snprintf(url, len, "%s/api/v1/query?query=%s&time=%s", server_address, escaped, ts);
    curl_free(escaped);
    return url;
}

const char *prom_status_reason(enum prom_status st)
{
    switch (st) {
    case PROM_OK:
        return "QueryOK";
    case PROM_UNREACHABLE:
        return "PrometheusUnreachable";
    case PROM_HTTP_STATUS:
        return "PrometheusError";
    case PROM_BAD_RESPONSE:
        return "BadResponse";
    case PROM_EMPTY:
        return "EmptyResult";
    case PROM_MULTIPLE:
        return "MultipleSeries";
    case PROM_NOT_A_NUMBER:
        return "NotANumber";
    case PROM_INFINITE:
        return "InfiniteValue";
    }
    return "Unknown";
}

/* The [timestamp, "value"] pair's value. */
static enum prom_status sample_value(const cJSON *pair, double *value, char *reason, size_t rlen)
{
    const cJSON *v = cJSON_GetArrayItem(pair, 1);
    if (!cJSON_IsArray(pair) || !cJSON_IsString(v)) {
        snprintf(reason, rlen, "the sample has no value");
        return PROM_NOT_A_NUMBER;
    }
    char *end;
    double d = strtod(v->valuestring, &end);
    if (!*v->valuestring || *end) {
        snprintf(reason, rlen, "the value \"%.64s\" is not a number", v->valuestring);
        return PROM_NOT_A_NUMBER;
    }
    if (isinf(d)) {
        snprintf(reason, rlen, "the value is infinite (%s)", v->valuestring);
        return PROM_INFINITE;
    }
    *value = d; /* NaN is a value: it is below no threshold, so it never scales down */
    return PROM_OK;
}

enum prom_status prom_parse_response(long http_status, const char *body, size_t body_len,
                                     double *value, char *reason, size_t reason_len)
{
    reason[0] = '\0';
    if (http_status == 0) {
        snprintf(reason, reason_len, "no answer from Prometheus");
        return PROM_UNREACHABLE;
    }
    cJSON *root = cJSON_ParseWithLength(body, body_len);
    if (http_status != 200) {
        const char *perr = root ? string_member(root, "error") : NULL;
        snprintf(reason, reason_len, "Prometheus answered HTTP %ld%s%.200s", http_status,
                 perr ? ": " : "", perr ? perr : "");
        cJSON_Delete(root);
        return PROM_HTTP_STATUS;
    }
    enum prom_status st = PROM_BAD_RESPONSE;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const char *rtype = string_member(data, "resultType");
    const cJSON *result = cJSON_GetObjectItemCaseSensitive(data, "result");
    if (!root || !rtype || !result) {
        snprintf(reason, reason_len, "the answer is not a Prometheus query result");
    } else if (strcmp(rtype, "scalar") == 0) {
        st = sample_value(result, value, reason, reason_len);
    } else if (strcmp(rtype, "vector") != 0 || !cJSON_IsArray(result)) {
        snprintf(reason, reason_len, "the query gives a %.16s, not an instant vector", rtype);
    } else if (cJSON_GetArraySize(result) == 0) {
        snprintf(reason, reason_len, "the query result is empty");
        st = PROM_EMPTY;
    } else if (cJSON_GetArraySize(result) > 1) {
        snprintf(reason, reason_len, "the query returned %d series, not one",
                 cJSON_GetArraySize(result));
        st = PROM_MULTIPLE;
    } else {
        st = sample_value(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(result, 0), "value"),
                          value, reason, reason_len);
    }
    cJSON_Delete(root);
    return st;
}

struct prom_call {
    struct http_request *req;
    prom_done_fn done;
    void *arg;
};

static void on_query_done(struct http_request *req, const struct http_response *resp, void *arg)
{
    struct prom_call *call = arg;
    double value = 0;
    char reason[512];
    enum prom_status st;
    if (resp->curl_code != 0) {
        snprintf(reason, sizeof(reason), "no answer from Prometheus: %s", resp->error);
        st = PROM_UNREACHABLE;
    } else {
        st = prom_parse_response(resp->status, resp->body, resp->body_len, &value, reason,
                                 sizeof(reason));
    }
    call->done(st, value, st == PROM_OK ? "" : reason, call->arg);
    free(call);
}

struct prom_call *prom_query(struct http_client *http, const struct prom_trigger *t,
                             const char *query, prom_done_fn done, void *arg)
{
    char *url = prom_query_url(t->server_address, query, time(NULL));
    struct prom_call *call = calloc(1, sizeof(*call));
    if (!url || !call) {
        free(url);
        free(call);
        return NULL;
    }
    call->done = done;
    call->arg = arg;
    struct http_request_opts o = {
        .method = "GET",
        .url = url,
        .headers = (const char *const *)t->headers,
        .timeout_ms = PROM_TIMEOUT_MS,
        .connect_timeout_ms = PROM_TIMEOUT_MS,
        .on_done = on_query_done,
        .arg = call,
    };
    call->req = http_request_start(http, &o);
    free(url);
    if (!call->req) {
        free(call);
        return NULL;
    }
    return call;
}

void prom_query_cancel(struct prom_call *call)
{
    if (!call)
        return;
    http_request_cancel(call->req);
    free(call);
}
