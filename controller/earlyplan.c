/*
 * earlyplan: early readiness's reading of a pod. See earlyplan.h.
 */
#include "controller/earlyplan.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/json.h"

static const char *const FALLBACK_LABELS[EARLY_FALLBACK_N] = {
    "", "exec", "no_probe", "readiness_gates", "bad_probe", "disabled"};

const char *early_fallback_label(enum early_fallback f)
{
    return f < EARLY_FALLBACK_N ? FALLBACK_LABELS[f] : "";
}

static void check_clear(struct early_check *c)
{
    free(c->path);
    free(c->host);
    for (size_t i = 0; i < c->n_headers; i++)
        free(c->headers[i]);
    free(c->headers);
    free(c->grpc_service);
    memset(c, 0, sizeof(*c));
}

void early_plan_clear(struct early_plan *p)
{
    for (size_t i = 0; i < p->n_containers; i++) {
        free(p->containers[i].name);
        check_clear(&p->containers[i].startup);
        check_clear(&p->containers[i].ready);
    }
    free(p->containers);
    for (size_t i = 0; i < p->n_ports; i++)
        free(p->ports[i].name);
    free(p->ports);
    memset(p, 0, sizeof(*p));
}

static void fall_back(struct early_plan *p, enum early_fallback f, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The first reason found stays: it is the one logged. */
static void fall_back(struct early_plan *p, enum early_fallback f, const char *fmt, ...)
{
    if (p->fallback != EARLY_PROBE)
        return;
    p->fallback = f;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->why, sizeof(p->why), fmt, ap);
    va_end(ap);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static long seconds_ms(const cJSON *probe, const char *field, long dflt)
{
    const cJSON *v = json_get(probe, field);
    return cJSON_IsNumber(v) && v->valuedouble >= 0 ? (long)v->valuedouble * 1000 : dflt;
}

static int count_at_least_1(const cJSON *probe, const char *field, int dflt)
{
    const cJSON *v = json_get(probe, field);
    return cJSON_IsNumber(v) && v->valueint >= 1 ? v->valueint : dflt;
}

/* A probe's port: a number, or the name of one of the container's ports. 0 with why set. */
static unsigned probe_port(const cJSON *v, const cJSON *container, char *why, size_t len)
{
    if (cJSON_IsNumber(v) && v->valueint > 0 && v->valueint < 65536)
        return (unsigned)v->valueint;
    if (cJSON_IsString(v)) {
        const cJSON *cp;
        cJSON_ArrayForEach(cp, json_get(container, "ports"))
        {
            const char *name = json_str(cp, "name");
            const cJSON *num = json_get(cp, "containerPort");
            if (name && strcmp(name, v->valuestring) == 0 && cJSON_IsNumber(num) &&
                num->valueint > 0 && num->valueint < 65536)
                return (unsigned)num->valueint;
        }
        snprintf(why, len, "port \"%.60s\" names no port of the container", v->valuestring);
        return 0;
    }
    snprintf(why, len, "port is not a port number or name");
    return 0;
}

static bool has_line_break(const char *s)
{
    return strpbrk(s, "\r\n") != NULL;
}

/* probe.httpGet.httpHeaders as "Name: value" lines. -1 with why set. */
static int http_headers(const cJSON *list, struct early_check *out, char *why, size_t len)
{
    size_t n = (size_t)cJSON_GetArraySize(list);
    if (!n)
        return 0;
    if (n > EARLY_MAX_HEADERS) {
        snprintf(why, len, "more than %d httpHeaders", EARLY_MAX_HEADERS);
        return -1;
    }
    out->headers = calloc(n, sizeof(*out->headers));
    if (!out->headers) {
        snprintf(why, len, "out of memory");
        return -1;
    }
    const cJSON *h;
    cJSON_ArrayForEach(h, list)
    {
        const char *name = json_str(h, "name"), *value = json_str(h, "value");
        if (!name || !*name || !value || strchr(name, ':') || strchr(name, ' ') ||
            has_line_break(name) || has_line_break(value)) {
            snprintf(why, len, "httpHeaders[%zu] is not a header holdfast can send",
                     out->n_headers);
            return -1;
        }
        size_t sz = strlen(name) + strlen(value) + 3;
        char *line = malloc(sz);
        if (!line) {
            snprintf(why, len, "out of memory");
            return -1;
        }
        snprintf(line, sz, "%s: %s", name, value);
        out->headers[out->n_headers++] = line;
    }
    return 0;
}

/* One probe of a container (NULL: none) into out. -1 with why set (the field is named by the
 * caller). */
static int parse_check(const cJSON *probe, const cJSON *container, struct early_check *out,
                       char *why, size_t len)
{
    memset(out, 0, sizeof(*out));
    if (!cJSON_IsObject(probe))
        return 0;
    out->timeout_ms = seconds_ms(probe, "timeoutSeconds", 1000);
    if (out->timeout_ms <= 0)
        out->timeout_ms = 1000;
    out->initial_delay_ms = seconds_ms(probe, "initialDelaySeconds", 0);
    out->success_threshold = count_at_least_1(probe, "successThreshold", 1);
    out->failure_threshold = count_at_least_1(probe, "failureThreshold", 3);
    const cJSON *http = json_get(probe, "httpGet"), *tcp = json_get(probe, "tcpSocket");
    const cJSON *grpc = json_get(probe, "grpc");
    if (json_get(probe, "exec")) {
        out->kind = EARLY_CHECK_EXEC;
        return 0;
    }
    if (cJSON_IsObject(http)) {
        out->kind = EARLY_CHECK_HTTP;
        char sub[160];
        if (!(out->port = probe_port(json_get(http, "port"), container, sub, sizeof(sub)))) {
            snprintf(why, len, "httpGet.%s", sub);
            return -1;
        }
        const char *scheme = json_str(http, "scheme");
        if (scheme && strcmp(scheme, "HTTP") != 0 && strcmp(scheme, "HTTPS") != 0) {
            snprintf(why, len, "httpGet.scheme \"%.20s\" is neither HTTP nor HTTPS", scheme);
            return -1;
        }
        out->https = scheme && strcmp(scheme, "HTTPS") == 0;
        const char *path = json_str(http, "path");
        if (!path || !*path)
            path = "/";
        if (has_line_break(path) || strpbrk(path, " #")) {
            snprintf(why, len, "httpGet.path is not a path holdfast can send");
            return -1;
        }
        size_t n = strlen(path) + 2;
        out->path = malloc(n);
        if (out->path)
            snprintf(out->path, n, "%s%s", path[0] == '/' ? "" : "/", path);
        const char *host = json_str(http, "host");
        out->host = host && *host ? strdup(host) : NULL;
        if (out->host && strpbrk(out->host, "/@?# \r\n")) {
            snprintf(why, len, "httpGet.host is not a host name or address");
            return -1;
        }
        if (http_headers(json_get(http, "httpHeaders"), out, sub, sizeof(sub)) < 0) {
            snprintf(why, len, "httpGet.%s", sub);
            return -1;
        }
        return out->path ? 0 : -1;
    }
    if (cJSON_IsObject(tcp)) {
        out->kind = EARLY_CHECK_TCP;
        char sub[160];
        if (!(out->port = probe_port(json_get(tcp, "port"), container, sub, sizeof(sub)))) {
            snprintf(why, len, "tcpSocket.%s", sub);
            return -1;
        }
        const char *host = json_str(tcp, "host");
        unsigned char a[16];
        if (host && *host && inet_pton(AF_INET, host, a) != 1 &&
            inet_pton(AF_INET6, host, a) != 1) {
            snprintf(why, len, "tcpSocket.host \"%.60s\" is not an address", host);
            return -1;
        }
        out->host = host && *host ? strdup(host) : NULL;
        return 0;
    }
    if (cJSON_IsObject(grpc)) {
        out->kind = EARLY_CHECK_GRPC;
        const cJSON *port = json_get(grpc, "port");
        if (!cJSON_IsNumber(port) || port->valueint <= 0 || port->valueint >= 65536) {
            snprintf(why, len, "grpc.port is not a port number");
            return -1;
        }
        out->port = (unsigned)port->valueint;
        out->grpc_service = dup_or_null(json_str(grpc, "service"));
        return 0;
    }
    snprintf(why, len, "no httpGet, tcpSocket, grpc or exec");
    return -1;
}

/* The status of the container named `name`, or NULL. */
static const cJSON *container_status(const cJSON *statuses, const char *name)
{
    const cJSON *s;
    cJSON_ArrayForEach(s, statuses)
    {
        const char *n = json_str(s, "name");
        if (n && name && strcmp(n, name) == 0)
            return s;
    }
    return NULL;
}

static bool condition_true(const cJSON *conditions, const char *type)
{
    const cJSON *c;
    cJSON_ArrayForEach(c, conditions)
    {
        const char *t = json_str(c, "type"), *st = json_str(c, "status");
        if (t && strcmp(t, type) == 0)
            return st && strcmp(st, "True") == 0;
    }
    return false;
}

/* The container's named ports, appended to p->ports. */
static void add_ports(struct early_plan *p, const cJSON *container)
{
    const cJSON *cp;
    cJSON_ArrayForEach(cp, json_get(container, "ports"))
    {
        const char *name = json_str(cp, "name");
        const cJSON *num = json_get(cp, "containerPort");
        if (!name || !cJSON_IsNumber(num) || num->valueint <= 0 || num->valueint >= 65536)
            continue;
        struct early_port *grown = realloc(p->ports, (p->n_ports + 1) * sizeof(*grown));
        char *copy = strdup(name);
        if (!grown || !copy) {
            free(copy);
            if (grown)
                p->ports = grown;
            return;
        }
        p->ports = grown;
        p->ports[p->n_ports].name = copy;
        p->ports[p->n_ports++].port = (unsigned)num->valueint;
    }
}

int early_plan_parse(const cJSON *pod, struct early_plan *out)
{
    early_plan_clear(out);
    const cJSON *md = json_get(pod, "metadata"), *spec = json_get(pod, "spec");
    const cJSON *st = json_get(pod, "status");
    const cJSON *containers = json_get(spec, "containers");
    out->deleting = json_get(md, "deletionTimestamp") != NULL;
    const char *ip = json_str(st, "podIP");
    if (ip && strlen(ip) < sizeof(out->ip))
        snprintf(out->ip, sizeof(out->ip), "%s", ip);
    out->kubelet_ready = condition_true(json_get(st, "conditions"), "Ready");
    size_t n = (size_t)cJSON_GetArraySize(containers);
    if (!cJSON_IsArray(containers) || n == 0 || n > EARLY_MAX_CONTAINERS) {
        fall_back(out, EARLY_FALLBACK_BAD, "spec.containers: not a list of 1 to %d containers",
                  EARLY_MAX_CONTAINERS);
        return -1;
    }
    if (cJSON_GetArraySize(json_get(spec, "readinessGates")) > 0)
        fall_back(out, EARLY_FALLBACK_GATES,
                  "spec.readinessGates: another controller must agree before it is Ready");
    out->containers = calloc(n, sizeof(*out->containers));
    if (!out->containers) {
        fall_back(out, EARLY_FALLBACK_BAD, "out of memory");
        return -1;
    }
    out->running = true;
    bool any_ready_probe = false;
    const cJSON *statuses = json_get(st, "containerStatuses");
    const cJSON *c;
    cJSON_ArrayForEach(c, containers)
    {
        struct early_container *ec = &out->containers[out->n_containers++];
        ec->name = dup_or_null(json_str(c, "name"));
        ec->started_ms = -1;
        const cJSON *cs = container_status(statuses, ec->name);
        const cJSON *running = json_get(json_get(cs, "state"), "running");
        ec->running = cJSON_IsObject(running);
        int64_t t;
        const char *since = json_str(running, "startedAt");
        if (since && clock_rfc3339_parse(since, &t) == 0)
            ec->started_ms = t * 1000;
        ec->started = cJSON_IsTrue(json_get(cs, "started"));
        const cJSON *rc = json_get(cs, "restartCount");
        ec->restarts = cJSON_IsNumber(rc) ? rc->valueint : 0;
        out->running &= ec->running;
        add_ports(out, c);
        char why[200];
        const char *cname = ec->name ? ec->name : "?";
        if (parse_check(json_get(c, "startupProbe"), c, &ec->startup, why, sizeof(why)) < 0)
            fall_back(out, EARLY_FALLBACK_BAD, "container %.63s: startupProbe.%s", cname, why);
        const cJSON *rp = json_get(c, "readinessProbe");
        any_ready_probe |= rp != NULL;
        if (parse_check(rp, c, &ec->ready, why, sizeof(why)) < 0)
            fall_back(out, EARLY_FALLBACK_BAD, "container %.63s: readinessProbe.%s", cname, why);
        else if (ec->ready.kind == EARLY_CHECK_EXEC)
            fall_back(out, EARLY_FALLBACK_EXEC,
                      "container %.63s: readinessProbe.exec runs inside the container", cname);
    }
    if (!any_ready_probe)
        fall_back(out, EARLY_FALLBACK_NONE,
                  "no container has a readinessProbe: the kubelet marks it Ready once it runs");
    return 0;
}

unsigned early_plan_port(const struct early_plan *p, unsigned number, const char *name,
                         unsigned port)
{
    if (number)
        return number;
    if (!name)
        return port;
    for (size_t i = 0; i < p->n_ports; i++)
        if (strcmp(p->ports[i].name, name) == 0)
            return p->ports[i].port;
    return 0;
}

bool early_next(const struct early_plan *plan, struct early_progress *prog, int64_t now_ms,
                struct early_due *due)
{
    due->container = -1;
    due->check = NULL;
    due->startup = false;
    due->at_ms = 0;
    bool all = true;
    for (size_t i = 0; i < plan->n_containers; i++) {
        const struct early_container *c = &plan->containers[i];
        struct early_progress *p = &prog[i];
        if (!p->passed && c->running) {
            if (p->seen_ms < 0)
                p->seen_ms = now_ms;
            if (!p->startup_passed && (c->started || c->startup.kind == EARLY_CHECK_NONE))
                p->startup_passed = true;
            if (p->startup_passed && c->ready.kind == EARLY_CHECK_NONE)
                p->passed = true;
        }
        if (p->passed)
            continue;
        all = false;
        if (!c->running || (!p->startup_passed && c->startup.kind == EARLY_CHECK_EXEC))
            continue; /* not running yet, or the kubelet runs its startupProbe */
        /* the container's start, never before the kubelet's: startedAt is cut to seconds */
        int64_t start = p->seen_ms;
        if (c->started_ms >= 0 && c->started_ms + 1000 < start)
            start = c->started_ms + 1000;
        const struct early_check *ck = p->startup_passed ? &c->ready : &c->startup;
        int64_t at = start + ck->initial_delay_ms;
        if (due->container < 0 || at < due->at_ms) {
            due->container = (int)i;
            due->startup = !p->startup_passed;
            due->check = ck;
            due->at_ms = at;
        }
    }
    return all;
}

bool early_result(const struct early_check *check, struct early_progress *prog, bool startup,
                  bool ok)
{
    if (!ok) {
        prog->successes = 0;
        return false;
    }
    int need = startup ? 1 : check->success_threshold;
    if (++prog->successes < need)
        return false;
    prog->successes = 0;
    if (startup)
        prog->startup_passed = true;
    else
        prog->passed = true;
    return true;
}

int early_url(const struct early_check *check, const char *ip, char *buf, size_t len)
{
    const char *host = check->host ? check->host : ip;
    bool v6 = strchr(host, ':') != NULL;
    const char *path = check->kind == EARLY_CHECK_GRPC ? "/grpc.health.v1.Health/Check"
                       : check->path                   ? check->path
                                                       : "/";
    int n = snprintf(buf, len, "%s://%s%s%s:%u%s", check->https ? "https" : "http", v6 ? "[" : "",
                     host, v6 ? "]" : "", check->port, path);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

size_t early_grpc_request(const char *service, unsigned char *buf, size_t len)
{
    size_t sl = service ? strlen(service) : 0;
    if (sl > 127 * 128 || len < 5 + 3 + sl)
        return 0;
    size_t msg = 0;
    unsigned char *m = buf + 5;
    if (sl) {
        m[msg++] = 0x0a; /* field 1 (service), length-delimited */
        if (sl < 128) {
            m[msg++] = (unsigned char)sl;
        } else {
            m[msg++] = (unsigned char)(0x80 | (sl & 0x7f));
            m[msg++] = (unsigned char)(sl >> 7);
        }
        memcpy(m + msg, service, sl);
        msg += sl;
    }
    buf[0] = 0; /* not compressed */
    buf[1] = (unsigned char)(msg >> 24);
    buf[2] = (unsigned char)(msg >> 16);
    buf[3] = (unsigned char)(msg >> 8);
    buf[4] = (unsigned char)msg;
    return 5 + msg;
}

/* A protobuf varint at *p (before end); false when malformed. */
static bool varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        unsigned char b = *(*p)++;
        *v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return true;
    }
    return false;
}

bool early_grpc_serving(const unsigned char *body, size_t len)
{
    if (len < 5 || body[0] != 0)
        return false;
    size_t msg = (size_t)body[1] << 24 | (size_t)body[2] << 16 | (size_t)body[3] << 8 | body[4];
    if (msg > len - 5)
        return false;
    const unsigned char *p = body + 5, *end = p + msg;
    bool serving = false;
    while (p < end) {
        uint64_t key, v;
        if (!varint(&p, end, &key))
            return false;
        switch (key & 7) {
        case 0:
            if (!varint(&p, end, &v))
                return false;
            if (key >> 3 == 1)
                serving = v == 1; /* HealthCheckResponse.status: SERVING */
            break;
        case 2:
            if (!varint(&p, end, &v) || v > (uint64_t)(end - p))
                return false;
            p += v;
            break;
        case 1:
            if (end - p < 8)
                return false;
            p += 8;
            break;
        case 5:
            if (end - p < 4)
                return false;
            p += 4;
            break;
        default:
            return false;
        }
    }
    return serving;
}
