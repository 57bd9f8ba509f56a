/*
 * prom: Prometheus triggers. See prom.h.
 */
#include "controller/prom.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/clock.h"
#include "common/json.h"
#include "common/strmap.h"
#include "common/xalloc.h"
#include "controller/kube/http.h"

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
    const char *type = json_str(trigger, "type");
    if (!type || strcmp(type, "prometheus") != 0)
        return fail(err, errlen, path, "type", ": must be \"prometheus\"");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(trigger, "metadata");
    if (!cJSON_IsObject(md))
        return fail(err, errlen, path, "metadata", ": required, an object");

    const char *query = json_str(md, "query");
    if (!query || !*query)
        return fail(err, errlen, path, "metadata.query", ": required, a PromQL expression");
    const char *server = json_str(md, "serverAddress");
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
    const char *filter = json_str(md, "uptimeFilter");

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
    char ts[CLOCK_RFC3339_MAX];
    clock_rfc3339_format(ts, sizeof(ts), (int64_t)now, 0, 0);
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
        const char *perr = root ? json_str(root, "error") : NULL;
        snprintf(reason, reason_len, "Prometheus answered HTTP %ld%s%.200s", http_status,
                 perr ? ": " : "", perr ? perr : "");
        cJSON_Delete(root);
        return PROM_HTTP_STATUS;
    }
    enum prom_status st = PROM_BAD_RESPONSE;
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const char *rtype = json_str(data, "resultType");
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

/* Starts the instant query `query` at `address` with `headers` (NULL when out of memory). */
static struct http_request *query_start(struct http_client *http, const char *address,
                                        char *const *headers, const char *query,
                                        http_done_fn on_done, void *arg)
{
    char *url = prom_query_url(address, query, (time_t)clock_wall_s());
    if (!url)
        return NULL;
    struct http_request_opts o = {
        .method = "GET",
        .url = url,
        .headers = (const char *const *)headers,
        .timeout_ms = PROM_TIMEOUT_MS,
        .connect_timeout_ms = PROM_TIMEOUT_MS,
        .on_done = on_done,
        .arg = arg,
    };
    struct http_request *req = http_request_start(http, &o);
    free(url);
    return req;
}

/* What a query's HTTP outcome says: the value, or why not in reason ("" when PROM_OK). */
static enum prom_status query_outcome(const struct http_response *resp, double *value, char *reason,
                                      size_t len)
{
    *value = 0;
    reason[0] = '\0';
    if (resp->curl_code != 0) {
        snprintf(reason, len, "no answer from Prometheus: %s", resp->error);
        return PROM_UNREACHABLE;
    }
    enum prom_status st =
        prom_parse_response(resp->status, resp->body, resp->body_len, value, reason, len);
    if (st == PROM_OK)
        reason[0] = '\0';
    return st;
}

static void on_query_done(struct http_request *req, const struct http_response *resp, void *arg)
{
    struct prom_call *call = arg;
    double value;
    char reason[512];
    enum prom_status st = query_outcome(resp, &value, reason, sizeof(reason));
    call->done(st, value, reason, call->arg);
    free(call);
}

struct prom_call *prom_query(struct http_client *http, const struct prom_trigger *t,
                             const char *query, prom_done_fn done, void *arg)
{
    struct prom_call *call = xcalloc(1, sizeof(*call));
    call->done = done;
    call->arg = arg;
    call->req = query_start(http, t->server_address, t->headers, query, on_query_done, call);
    if (!call->req) {
        free(call);
        return NULL;
    }
    return call;
}

/* ---- prom_hub ---- */

enum entry_state { ENTRY_QUEUED, ENTRY_INFLIGHT, ENTRY_ANSWERED };

struct prom_ask {
    prom_done_fn done;
    void *arg;
    struct prom_ask *next; /* its entry's waiters, or the hub's ready list */
    enum prom_status st;   /* the answer, once on the ready list */
    double value;
    char *reason;
};

struct prom_server {
    char *address;
    unsigned inflight;
    struct prom_entry *qhead, *qtail; /* queued entries, in order of asking */
};

/* One distinct query (server, headers, text) and its last answer. */
struct prom_entry {
    struct prom_hub *hub;
    char *key;
    char *address, *query;
    char **headers; /* a copy of the trigger's, NULL-terminated */
    enum entry_state state;
    uint64_t sent_ms;                 /* when the last query was sent (mono ms) */
    uint64_t queued_ms;               /* when it was queued (mono ms), while queued */
    struct prom_server *server;       /* while queued or in flight */
    struct http_request *req;         /* while in flight */
    struct prom_entry *qnext;         /* server's queue */
    struct prom_ask *wait_head;       /* waiting for the query queued or in flight */
    struct prom_ask **wait_tail;      /* where the next waiter goes */
    struct prom_entry *older, *newer; /* the hub's list, by last send (or creation) */
    enum prom_status st;
    double value;
    char *reason;
};

struct prom_hub {
    struct event_base *base;
    struct http_client *http;
    unsigned max_inflight;
    uint64_t share_ms;
    prom_drop_fn drop;
    struct strmap entries; /* key -> struct prom_entry */
    struct strmap servers; /* address -> struct prom_server, while it has work */
    struct prom_entry *oldest, *newest;
    struct prom_ask *ready_head, **ready_tail; /* answered, to be delivered by ready_ev */
    struct event *ready_ev;
    uint64_t queue_max_ms;  /* a query not sent by then is answered PROM_UNREACHABLE */
    struct event *queue_ev; /* armed while some query is queued */
    struct prom_hub_stats stats;
};

/* "<len>:<address><n headers>:<len>:<header>...<len>:<query>": no two queries share a key. */
static char *entry_key(const struct prom_trigger *t, const char *query)
{
    size_t len = strlen(t->server_address) + strlen(query) + 3 * 24;
    size_t n = 0;
    for (char **hp = t->headers; hp && *hp; hp++, n++)
        len += strlen(*hp) + 24; /* room for every "<len>:" */
    char *key = malloc(len);
    if (!key)
        return NULL;
    size_t off =
        (size_t)snprintf(key, len, "%zu:%s%zu:", strlen(t->server_address), t->server_address, n);
    for (char **hp = t->headers; hp && *hp; hp++)
        off += (size_t)snprintf(key + off, len - off, "%zu:%s", strlen(*hp), *hp);
    snprintf(key + off, len - off, "%zu:%s", strlen(query), query);
    return key;
}

static void list_unlink(struct prom_hub *h, struct prom_entry *en)
{
    if (en->older)
        en->older->newer = en->newer;
    else
        h->oldest = en->newer;
    if (en->newer)
        en->newer->older = en->older;
    else
        h->newest = en->older;
    en->older = en->newer = NULL;
}

static void list_append(struct prom_hub *h, struct prom_entry *en)
{
    en->older = h->newest;
    en->newer = NULL;
    if (h->newest)
        h->newest->newer = en;
    else
        h->oldest = en;
    h->newest = en;
}

static void entry_free(struct prom_entry *en)
{
    free(en->key);
    free(en->address);
    free(en->query);
    for (char **hp = en->headers; hp && *hp; hp++)
        free(*hp);
    free(en->headers);
    free(en->reason);
    free(en);
}

/* A new entry under key (taken: freed on failure), not queued yet. */
static struct prom_entry *entry_new(struct prom_hub *h, char *key, const struct prom_trigger *t,
                                    const char *query)
{
    struct prom_entry *en = calloc(1, sizeof(*en));
    if (!en) {
        free(key);
        return NULL;
    }
    en->hub = h;
    en->key = key;
    en->address = strdup(t->server_address);
    en->query = strdup(query);
    size_t n = 0;
    while (t->headers && t->headers[n])
        n++;
    en->headers = calloc(n + 1, sizeof(*en->headers));
    bool ok = en->address && en->query && en->headers;
    for (size_t i = 0; ok && i < n; i++)
        ok = (en->headers[i] = strdup(t->headers[i])) != NULL;
    if (!ok || strmap_put(&h->entries, key, en) < 0) {
        entry_free(en);
        return NULL;
    }
    en->state = ENTRY_ANSWERED; /* nothing asked yet: entry_queue follows */
    en->wait_tail = &en->wait_head;
    list_append(h, en);
    return en;
}

/* Answered entries whose answer can no longer be shared, oldest first. */
static void hub_sweep(struct prom_hub *h, uint64_t now)
{
    while (h->oldest && h->oldest->state == ENTRY_ANSWERED &&
           now - h->oldest->sent_ms >= h->share_ms) {
        struct prom_entry *en = h->oldest;
        list_unlink(h, en);
        strmap_del(&h->entries, en->key);
        entry_free(en);
    }
}

/* Hands an entry's answer to every ask waiting for it (delivered by ready_ev). */
static void entry_answered(struct prom_entry *en, enum prom_status st, double value,
                           const char *reason)
{
    struct prom_hub *h = en->hub;
    en->state = ENTRY_ANSWERED;
    en->st = st;
    en->value = value;
    free(en->reason);
    en->reason = strdup(reason);
    for (struct prom_ask *a = en->wait_head; a; a = a->next) {
        a->st = st;
        a->value = value;
        a->reason = strdup(reason); /* NULL (out of memory) is delivered as "" */
    }
    if (en->wait_head) {
        *h->ready_tail = en->wait_head;
        h->ready_tail = en->wait_tail;
        event_active(h->ready_ev, EV_TIMEOUT, 0);
    }
    en->wait_head = NULL;
    en->wait_tail = &en->wait_head;
}

static void server_pump(struct prom_hub *h, struct prom_server *sv);

static void on_entry_done(struct http_request *req, const struct http_response *resp, void *arg)
{
    (void)req;
    struct prom_entry *en = arg;
    struct prom_hub *h = en->hub;
    struct prom_server *sv = en->server;
    double value;
    char reason[512];
    enum prom_status st = query_outcome(resp, &value, reason, sizeof(reason));
    en->req = NULL;
    en->server = NULL;
    sv->inflight--;
    h->stats.inflight--;
    entry_answered(en, st, value, reason);
    server_pump(h, sv);
}

/* Sends queued entries while the server has room; forgets the server once it has no work. */
static void server_pump(struct prom_hub *h, struct prom_server *sv)
{
    while (sv->qhead && sv->inflight < h->max_inflight) {
        struct prom_entry *en = sv->qhead;
        sv->qhead = en->qnext;
        if (!sv->qhead)
            sv->qtail = NULL;
        en->qnext = NULL;
        h->stats.queued--;
        en->req = query_start(h->http, en->address, en->headers, en->query, on_entry_done, en);
        en->sent_ms = clock_mono_ms();
        list_unlink(h, en);
        list_append(h, en);
        if (!en->req) {
            en->server = NULL;
            entry_answered(en, PROM_UNREACHABLE, 0, "the query could not be sent (out of memory)");
            continue;
        }
        en->state = ENTRY_INFLIGHT;
        sv->inflight++;
        h->stats.inflight++;
        h->stats.sent++;
    }
    if (!sv->qhead && sv->inflight == 0) {
        strmap_del(&h->servers, sv->address);
        free(sv->address);
        free(sv);
    }
}

static void queue_arm(struct prom_hub *h, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    event_add(h->queue_ev, &tv);
}

struct expiry {
    struct prom_hub *h;
    uint64_t now, next; /* the earliest deadline left, UINT64_MAX none */
    struct prom_server **expired;
    size_t n, cap;
};

static void collect_expired(const char *key, void *value, void *arg)
{
    (void)key;
    struct expiry *x = arg;
    struct prom_server *sv = value;
    if (!sv->qhead)
        return;
    uint64_t deadline = sv->qhead->queued_ms + x->h->queue_max_ms;
    if (deadline > x->now) {
        if (deadline < x->next)
            x->next = deadline;
        return;
    }
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 8;
        struct prom_server **m = realloc(x->expired, cap * sizeof(*m));
        if (!m)
            return; /* tried again at the next tick */
        x->expired = m;
        x->cap = cap;
    }
    x->expired[x->n++] = sv;
}

/*
 * Queries that waited queue_max_ms for a slot (the server's max_inflight queries all that time
 * in flight: a slow or hanging Prometheus) are not sent: their askers get PROM_UNREACHABLE,
 * so no evaluation waits much longer than it did when each query had its own 5 s deadline.
 */
static void on_queue_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct prom_hub *h = arg;
    struct expiry x = {.h = h, .now = clock_mono_ms(), .next = UINT64_MAX};
    strmap_each(&h->servers, collect_expired, &x);
    for (size_t i = 0; i < x.n; i++) {
        struct prom_server *sv = x.expired[i];
        unsigned inflight = sv->inflight;
        while (sv->qhead && sv->qhead->queued_ms + h->queue_max_ms <= x.now) {
            struct prom_entry *en = sv->qhead;
            sv->qhead = en->qnext;
            if (!sv->qhead)
                sv->qtail = NULL;
            en->qnext = NULL;
            en->server = NULL;
            h->stats.queued--;
            char reason[256];
            snprintf(reason, sizeof(reason),
                     "no answer from Prometheus: not sent within %llu ms, while %u queries to "
                     "this server were in flight (--prometheus-max-concurrent)",
                     (unsigned long long)h->queue_max_ms, inflight);
            en->sent_ms = x.now; /* shared like an answer, so not asked again at once */
            list_unlink(h, en);
            list_append(h, en);
            entry_answered(en, PROM_UNREACHABLE, 0, reason);
        }
        if (sv->qhead && sv->qhead->queued_ms + h->queue_max_ms < x.next)
            x.next = sv->qhead->queued_ms + h->queue_max_ms;
        server_pump(h, sv); /* frees it when it has no work left */
    }
    free(x.expired);
    if (x.next != UINT64_MAX)
        queue_arm(h, x.next > x.now ? x.next - x.now : 1);
    else if (h->stats.queued)
        queue_arm(h, h->queue_max_ms); /* some expiry could not be collected */
}

static int entry_queue(struct prom_hub *h, struct prom_entry *en)
{
    struct prom_server *sv = strmap_get(&h->servers, en->address);
    if (!sv) {
        sv = calloc(1, sizeof(*sv));
        if (!sv || !(sv->address = strdup(en->address)) ||
            strmap_put(&h->servers, sv->address, sv) < 0) {
            if (sv)
                free(sv->address);
            free(sv);
            return -1;
        }
    }
    en->state = ENTRY_QUEUED;
    en->server = sv;
    en->queued_ms = clock_mono_ms();
    if (!evtimer_pending(h->queue_ev, NULL))
        queue_arm(h, h->queue_max_ms);
    if (sv->qtail)
        sv->qtail->qnext = en;
    else
        sv->qhead = en;
    sv->qtail = en;
    h->stats.queued++;
    return 0;
}

static void on_ready(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct prom_hub *h = arg;
    /* only what is ready now: asks answered by the callbacks wait for the next turn */
    struct prom_ask *a = h->ready_head;
    h->ready_head = NULL;
    h->ready_tail = &h->ready_head;
    while (a) {
        struct prom_ask *next = a->next;
        a->done(a->st, a->value, a->reason ? a->reason : "", a->arg);
        free(a->reason);
        free(a);
        a = next;
    }
}

struct prom_hub *prom_hub_new(struct event_base *base, struct http_client *http,
                              unsigned max_inflight, uint64_t share_ms, prom_drop_fn drop)
{
    struct prom_hub *h = xcalloc(1, sizeof(*h));
    h->base = base;
    h->http = http;
    h->max_inflight = max_inflight ? max_inflight : PROM_DEFAULT_MAX_INFLIGHT;
    h->share_ms = share_ms;
    h->drop = drop;
    h->ready_tail = &h->ready_head;
    h->queue_max_ms = PROM_TIMEOUT_MS;
    h->ready_ev = event_new(base, -1, 0, on_ready, h);
    h->queue_ev = evtimer_new(base, on_queue_timer, h);
    if (!h->ready_ev || !h->queue_ev) {
        if (h->ready_ev)
            event_free(h->ready_ev);
        free(h);
        return NULL;
    }
    return h;
}

static void drop_asks(struct prom_hub *h, struct prom_ask *a)
{
    while (a) {
        struct prom_ask *next = a->next;
        if (h->drop)
            h->drop(a->arg);
        free(a->reason);
        free(a);
        a = next;
    }
}

static void free_server(const char *key, void *value, void *arg)
{
    (void)key;
    (void)arg;
    struct prom_server *sv = value;
    free(sv->address);
    free(sv);
}

void prom_hub_free(struct prom_hub *h)
{
    if (!h)
        return;
    while (h->oldest) {
        struct prom_entry *en = h->oldest;
        list_unlink(h, en);
        if (en->req)
            http_request_cancel(en->req);
        drop_asks(h, en->wait_head);
        entry_free(en);
    }
    drop_asks(h, h->ready_head);
    strmap_clear(&h->entries);
    strmap_each(&h->servers, free_server, NULL);
    strmap_clear(&h->servers);
    event_free(h->ready_ev);
    event_free(h->queue_ev);
    free(h);
}

void prom_hub_set_queue_max(struct prom_hub *h, uint64_t ms)
{
    h->queue_max_ms = ms;
}

struct prom_ask *prom_hub_ask(struct prom_hub *h, const struct prom_trigger *t, const char *query,
                              uint64_t fresh_after_ms, prom_done_fn done, void *arg)
{
    uint64_t now = clock_mono_ms();
    hub_sweep(h, now);
    struct prom_ask *a = calloc(1, sizeof(*a));
    char *key = entry_key(t, query);
    if (!a || !key) {
        free(a);
        free(key);
        return NULL;
    }
    a->done = done;
    a->arg = arg;
    struct prom_entry *en = strmap_get(&h->entries, key);
    if (en) {
        free(key);
    } else if (!(en = entry_new(h, key, t, query))) {
        free(a);
        return NULL;
    } else {
        en->sent_ms = 0; /* never sent: not fresh */
        fresh_after_ms = UINT64_MAX;
    }
    if (en->state == ENTRY_ANSWERED && en->sent_ms > fresh_after_ms &&
        now - en->sent_ms < h->share_ms) {
        /* a fresh answer: shared, delivered by ready_ev */
        a->st = en->st;
        a->value = en->value;
        a->reason = strdup(en->reason ? en->reason : "");
        *h->ready_tail = a;
        h->ready_tail = &a->next;
        event_active(h->ready_ev, EV_TIMEOUT, 0);
        h->stats.shared++;
        return a;
    }
    if (en->state == ENTRY_ANSWERED) {
        if (entry_queue(h, en) < 0) {
            free(a);
            return NULL;
        }
    } else {
        h->stats.shared++; /* queued or in flight: this ask waits for that query */
    }
    *en->wait_tail = a;
    en->wait_tail = &a->next;
    if (en->state == ENTRY_QUEUED)
        server_pump(h, en->server);
    return a;
}

void prom_hub_stats(const struct prom_hub *h, struct prom_hub_stats *out)
{
    *out = h->stats;
}
