/*
 * config: reading and validating the standalone configuration file. See config.h; the user
 * reference is docs/standalone-config.md.
 *
 * Validation walks the JSON tree once, carrying the JSON path of the value in hand, so that
 * the first problem found is reported as "FILE: services[1].listen[0]: what is wrong" and the
 * operator can go straight to it. Every object rejects keys it does not know: a misspelt
 * option is an error, never a silently ignored setting. Before that, any string of the file
 * (a value or a key) that holds a NUL character is refused: read as a C string it would be
 * cut short there, and "a\u0000b" would name a service "a".
 */
#include "standalone/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

#define JSON_PATH_MAX 256
#define MSG_MAX 1024
#define CONFIG_FILE_MAX (16 * 1024 * 1024)
#define DNS_LABEL_MAX 63

/* An integer setting: where it is, its range, and where it goes. */
struct int_field {
    const char *key;
    unsigned long long min, max;
};

static int fail(char *msg, const char *json_path, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Writes "json_path.key: message" into msg (MSG_MAX bytes) and returns -1. key may be NULL;
 * with an empty json_path too (the top level), the message stands alone.
 */
static int fail(char *msg, const char *json_path, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool has_path = *json_path || key;
    int n = snprintf(msg, MSG_MAX, "%s%s%s%s", json_path, key && *json_path ? "." : "",
                     key ? key : "", has_path ? ": " : "");
    if (n >= 0 && n < MSG_MAX)
        vsnprintf(msg + n, MSG_MAX - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* Rejects keys of `obj` that are not in the NULL-terminated `allowed`, and repeated keys. */
static int check_keys(const cJSON *obj, const char *json_path, const char *const *allowed,
                      char *msg)
{
    bool repeated;
    const cJSON *item = json_check_keys(obj, allowed, &repeated);
    if (!item)
        return 0;
    if (repeated)
        return fail(msg, json_path, NULL, "key \"%s\" appears twice", item->string);
    char expected[256];
    json_keys_join(allowed, expected, sizeof(expected));
    return fail(msg, json_path, NULL, "unknown key \"%s\" (expected one of %s)", item->string,
                expected);
}

/* The member `key` of `obj` if it is an object (NULL when absent), or sets *bad. */
static const cJSON *get_object(const cJSON *obj, const char *key, const char *json_path, bool *bad,
                               char *msg)
{
    const cJSON *item = json_get(obj, key);
    *bad = item && !cJSON_IsObject(item);
    if (*bad)
        fail(msg, json_path, key, "must be an object, not %s", json_type_name(item));
    return *bad ? NULL : item;
}

/* Reads an optional string member: 1 with *out set, 0 when absent, -1 on a type error. */
static int get_string(const cJSON *obj, const char *key, const char *json_path, const char **out,
                      char *msg)
{
    const cJSON *item = json_get(obj, key);
    if (!item)
        return 0;
    if (!cJSON_IsString(item) || !item->valuestring)
        return fail(msg, json_path, key, "must be a string, not %s", json_type_name(item));
    *out = item->valuestring;
    return 1;
}

/*
 * Reads an optional integer member within [f->min, f->max] into *out; leaves *out (the
 * default) when absent. JSON numbers are doubles: every value in range is exact.
 */
static int get_int(const cJSON *obj, const struct int_field *f, const char *json_path,
                   unsigned long long *out, char *msg)
{
    const cJSON *item = json_get(obj, f->key);
    if (!item)
        return 0;
    if (!cJSON_IsNumber(item))
        return fail(msg, json_path, f->key, "must be an integer, not %s", json_type_name(item));
    double v = item->valuedouble;
    if (v < (double)f->min || v > (double)f->max || v != (double)(unsigned long long)v)
        return fail(msg, json_path, f->key, "must be an integer from %llu to %llu", f->min, f->max);
    *out = (unsigned long long)v;
    return 0;
}

static int get_unsigned(const cJSON *obj, const struct int_field *f, const char *json_path,
                        unsigned *out, char *msg)
{
    unsigned long long v = *out;
    if (get_int(obj, f, json_path, &v, msg) < 0)
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int get_size(const cJSON *obj, const struct int_field *f, const char *json_path, size_t *out,
                    char *msg)
{
    unsigned long long v = *out;
    if (get_int(obj, f, json_path, &v, msg) < 0)
        return -1;
    *out = (size_t)v;
    return 0;
}

static char *dup_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy)
        memcpy(copy, s, n);
    return copy;
}

/* Kubernetes' DNS-1123 label: what a namespace and a Service name must be. */
static bool is_dns_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > DNS_LABEL_MAX || s[0] == '-' || s[n - 1] == '-')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

static int get_dns_label(const cJSON *obj, const char *key, const char *json_path,
                         const char *fallback, char **out, char *msg)
{
    const char *value = fallback;
    int rc = get_string(obj, key, json_path, &value, msg);
    if (rc < 0)
        return -1;
    if (rc == 0 && !fallback)
        return fail(msg, json_path, key, "is required");
    if (!is_dns_label(value))
        return fail(msg, json_path, key,
                    "\"%s\" is not a DNS-1123 label (lowercase letters, digits and '-', "
                    "starting and ending with a letter or digit, at most 63 characters)",
                    value);
    *out = dup_string(value);
    return *out ? 0 : fail(msg, json_path, key, "out of memory");
}

/*
 * Reads an array of addresses. `required` means present and non-empty; `is_backend` refuses
 * port 0, which can be listened on (the kernel picks) but not connected to.
 */
static int get_addrs(const cJSON *obj, const char *key, const char *json_path, bool required,
                     bool is_backend, struct addr **out, size_t *n_out, char *msg)
{
    const cJSON *array = json_get(obj, key);
    char sub[JSON_PATH_MAX];
    snprintf(sub, sizeof(sub), "%s%s%s", json_path, *json_path ? "." : "", key);
    if (!array)
        return required ? fail(msg, sub, NULL, "is required") : 0;
    if (!cJSON_IsArray(array))
        return fail(msg, sub, NULL, "must be an array of \"HOST:PORT\" strings, not %s",
                    json_type_name(array));
    size_t n = (size_t)cJSON_GetArraySize(array);
    if (n == 0)
        return required ? fail(msg, sub, NULL, "must not be empty") : 0;
    *out = calloc(n, sizeof(**out));
    if (!*out)
        return fail(msg, sub, NULL, "out of memory");
    for (const cJSON *item = array->child; item; item = item->next) {
        char at[JSON_PATH_MAX + 32];
        snprintf(at, sizeof(at), "%s[%zu]", sub, *n_out);
        if (!cJSON_IsString(item))
            return fail(msg, at, NULL, "must be a \"HOST:PORT\" string, not %s",
                        json_type_name(item));
        char why[256];
        struct addr *a = &(*out)[*n_out];
        if (addr_parse(item->valuestring, a, why, sizeof(why)) < 0)
            return fail(msg, at, NULL, "%s", why);
        if (is_backend && addr_port(a) == 0)
            return fail(msg, at, NULL, "\"%s\": a backend needs a port other than 0",
                        item->valuestring);
        (*n_out)++;
    }
    return 0;
}

static int parse_wake(const cJSON *svc, const char *json_path, struct config_service *s, char *msg)
{
    static const char *const keys[] = {"command", NULL};
    char sub[JSON_PATH_MAX];
    bool bad;
    const cJSON *wake = get_object(svc, "wake", json_path, &bad, msg);
    if (bad)
        return -1;
    if (!wake)
        return 0;
    snprintf(sub, sizeof(sub), "%s.wake", json_path);
    if (check_keys(wake, sub, keys, msg) < 0)
        return -1;
    const cJSON *cmd = json_get(wake, "command");
    if (!cmd)
        return fail(msg, sub, "command", "is required");
    if (!cJSON_IsArray(cmd) || cJSON_GetArraySize(cmd) == 0)
        return fail(msg, sub, "command",
                    "must be a non-empty array of strings (program, then arguments)");
    snprintf(sub, sizeof(sub), "%s.wake.command", json_path);
    size_t n = (size_t)cJSON_GetArraySize(cmd);
    s->wake_argv = calloc(n + 1, sizeof(*s->wake_argv));
    if (!s->wake_argv)
        return fail(msg, sub, NULL, "out of memory");
    size_t i = 0;
    for (const cJSON *item = cmd->child; item; item = item->next, i++) {
        char at[JSON_PATH_MAX + 32];
        snprintf(at, sizeof(at), "%s[%zu]", sub, i);
        if (!cJSON_IsString(item))
            return fail(msg, at, NULL, "must be a string, not %s", json_type_name(item));
        if (i == 0 && item->valuestring[0] == '\0')
            return fail(msg, at, NULL, "the program must not be empty");
        s->wake_argv[i] = dup_string(item->valuestring);
        if (!s->wake_argv[i])
            return fail(msg, at, NULL, "out of memory");
    }
    return 0;
}

static int parse_readiness(const cJSON *svc, const char *json_path, struct config_service *s,
                           char *msg)
{
    static const char *const kinds[] = {"tcp", "httpGet", NULL};
    static const char *const no_keys[] = {NULL};
    static const char *const http_keys[] = {"path", NULL};
    char sub[JSON_PATH_MAX];
    bool bad;
    const cJSON *r = get_object(svc, "readiness", json_path, &bad, msg);
    s->readiness = READINESS_TCP;
    if (bad)
        return -1;
    if (!r)
        return 0;
    snprintf(sub, sizeof(sub), "%s.readiness", json_path);
    if (check_keys(r, sub, kinds, msg) < 0)
        return -1;
    if (cJSON_GetArraySize(r) != 1)
        return fail(msg, sub, NULL,
                    "must have exactly one of {\"tcp\": {}} or {\"httpGet\": {\"path\": \"/\"}}");
    const cJSON *tcp = get_object(r, "tcp", sub, &bad, msg);
    if (bad)
        return -1;
    if (tcp) {
        snprintf(sub, sizeof(sub), "%s.readiness.tcp", json_path);
        return check_keys(tcp, sub, no_keys, msg) < 0
                   ? fail(msg, sub, NULL, "takes no settings (write {})")
                   : 0;
    }
    const cJSON *http = get_object(r, "httpGet", sub, &bad, msg);
    if (bad)
        return -1;
    snprintf(sub, sizeof(sub), "%s.readiness.httpGet", json_path);
    if (check_keys(http, sub, http_keys, msg) < 0)
        return -1;
    const char *path = "/";
    if (get_string(http, "path", sub, &path, msg) < 0)
        return -1;
    if (path[0] != '/')
        return fail(msg, sub, "path", "\"%s\" must start with \"/\"", path);
    s->readiness = READINESS_HTTP_GET;
    s->readiness_path = dup_string(path);
    return s->readiness_path ? 0 : fail(msg, sub, "path", "out of memory");
}

static int parse_service(const cJSON *svc, const char *json_path, struct config_service *s,
                         char *msg)
{
    static const char *const keys[] = {"namespace",
                                       "name",
                                       "listen",
                                       "backends",
                                       "protocol",
                                       "wake",
                                       "readiness",
                                       "readinessPeriodMs",
                                       "holdTimeoutSeconds",
                                       "maxHeldConnections",
                                       "maxHeldBytes",
                                       "probeResponse",
                                       "waitingPage",
                                       NULL};
    static const struct int_field period = {"readinessPeriodMs", 10, 3600000};
    static const struct int_field hold = {"holdTimeoutSeconds", 1, 86400};
    static const struct int_field conns = {"maxHeldConnections", 1, 10000000};
    static const struct int_field bytes = {"maxHeldBytes", 1, 1ULL << 40};

    s->readiness_period_ms = 1000;
    s->hold_timeout_s = 600;
    s->max_held_connections = 10000;
    s->max_held_bytes = 64 * 1024 * 1024;
    s->protocol = PROTO_HTTP;

    if (!cJSON_IsObject(svc))
        return fail(msg, json_path, NULL, "must be an object, not %s", json_type_name(svc));
    if (check_keys(svc, json_path, keys, msg) < 0)
        return -1;
    if (get_dns_label(svc, "namespace", json_path, "default", &s->namespace_, msg) < 0 ||
        get_dns_label(svc, "name", json_path, NULL, &s->name, msg) < 0)
        return -1;
    if (get_addrs(svc, "listen", json_path, true, false, &s->listen, &s->n_listen, msg) < 0 ||
        get_addrs(svc, "backends", json_path, true, true, &s->backends, &s->n_backends, msg) < 0)
        return -1;

    const char *protocol = "http";
    if (get_string(svc, "protocol", json_path, &protocol, msg) < 0)
        return -1;
    if (strcmp(protocol, "tcp") == 0)
        s->protocol = PROTO_TCP;
    else if (strcmp(protocol, "http") != 0)
        return fail(msg, json_path, "protocol", "must be \"http\" or \"tcp\", not \"%s\"",
                    protocol);

    if (parse_wake(svc, json_path, s, msg) < 0 || parse_readiness(svc, json_path, s, msg) < 0)
        return -1;
    if (get_unsigned(svc, &period, json_path, &s->readiness_period_ms, msg) < 0 ||
        get_unsigned(svc, &hold, json_path, &s->hold_timeout_s, msg) < 0 ||
        get_size(svc, &conns, json_path, &s->max_held_connections, msg) < 0 ||
        get_size(svc, &bytes, json_path, &s->max_held_bytes, msg) < 0)
        return -1;

    char sub[JSON_PATH_MAX];
    snprintf(sub, sizeof(sub), "%s.probeResponse", json_path);
    s->probes = route_probes_parse(json_get(svc, "probeResponse"), sub, msg, MSG_MAX);
    if (!s->probes)
        return -1;
    if (s->protocol == PROTO_TCP && route_probes_count(s->probes) > 0)
        return fail(msg, sub, NULL, "needs \"protocol\": \"http\" (a tcp service is not parsed)");
    snprintf(sub, sizeof(sub), "%s.waitingPage", json_path);
    if (waiting_page_parse(json_get(svc, "waitingPage"), sub, &s->waiting_page, msg, MSG_MAX) < 0)
        return -1;
    if (s->protocol == PROTO_TCP && s->waiting_page.enabled)
        return fail(msg, sub, "enabled",
                    "needs \"protocol\": \"http\" (a tcp service is not parsed)");
    return 0;
}

static int parse_limits(const cJSON *root, struct dp_limits *l, char *msg)
{
    static const char *const keys[] = {
        "maxHeldConnections", "maxHeldBytes",       "holdBufferBytes",  "maxHeadBytes",
        "headTimeoutSeconds", "idleTimeoutSeconds", "connectTimeoutMs", NULL};
    static const struct int_field conns = {"maxHeldConnections", 1, 10000000};
    static const struct int_field bytes = {"maxHeldBytes", 1, 1ULL << 40};
    static const struct int_field buffer = {"holdBufferBytes", 1024, 64 * 1024 * 1024};
    static const struct int_field head = {"maxHeadBytes", 1024, 1024 * 1024};
    static const struct int_field head_timeout = {"headTimeoutSeconds", 1, 3600};
    static const struct int_field idle = {"idleTimeoutSeconds", 0, 604800};
    static const struct int_field connect = {"connectTimeoutMs", 1, 600000};
    bool bad;
    const cJSON *obj = get_object(root, "limits", "", &bad, msg);
    if (bad)
        return -1;
    if (!obj)
        return 0;
    if (check_keys(obj, "limits", keys, msg) < 0)
        return -1;
    if (get_size(obj, &conns, "limits", &l->max_held_connections, msg) < 0 ||
        get_size(obj, &bytes, "limits", &l->max_held_bytes, msg) < 0 ||
        get_size(obj, &buffer, "limits", &l->hold_buffer_bytes, msg) < 0 ||
        get_size(obj, &head, "limits", &l->max_head_bytes, msg) < 0 ||
        get_unsigned(obj, &head_timeout, "limits", &l->head_timeout_s, msg) < 0 ||
        get_unsigned(obj, &idle, "limits", &l->idle_timeout_s, msg) < 0 ||
        get_unsigned(obj, &connect, "limits", &l->connect_timeout_ms, msg) < 0)
        return -1;
    return 0;
}

static int parse_shared(const cJSON *root, struct config *cfg, char *msg)
{
    static const char *const keys[] = {"listen", NULL};
    bool bad;
    const cJSON *obj = get_object(root, "shared", "", &bad, msg);
    if (bad)
        return -1;
    if (!obj)
        return 0;
    if (check_keys(obj, "shared", keys, msg) < 0)
        return -1;
    return get_addrs(obj, "listen", "shared", false, false, &cfg->shared_listen,
                     &cfg->n_shared_listen, msg);
}

/* Where a listen address is configured, for the message about a second use of it. */
static void listen_path(const struct config *cfg, size_t service, size_t i, char *out,
                        size_t outlen)
{
    if (service < cfg->n_services)
        snprintf(out, outlen, "services[%zu].listen[%zu]", service, i);
    else
        snprintf(out, outlen, "shared.listen[%zu]", i);
}

static const struct addr *listen_addr(const struct config *cfg, size_t service, size_t i)
{
    return service < cfg->n_services ? &cfg->services[service].listen[i] : &cfg->shared_listen[i];
}

static size_t listen_count(const struct config *cfg, size_t service)
{
    return service < cfg->n_services ? cfg->services[service].n_listen : cfg->n_shared_listen;
}

/*
 * Two services with one namespace/name, one address listened on twice (port 0 excepted: the
 * kernel picks a fresh port each time), or a backend that is one of holdfast's own listen
 * addresses (a request would loop).
 */
static int check_unique(const struct config *cfg, char *msg)
{
    for (size_t i = 0; i < cfg->n_services; i++) {
        for (size_t j = 0; j < i; j++) {
            const struct config_service *a = &cfg->services[i], *b = &cfg->services[j];
            if (strcmp(a->namespace_, b->namespace_) == 0 && strcmp(a->name, b->name) == 0) {
                char at[JSON_PATH_MAX + 32];
                snprintf(at, sizeof(at), "services[%zu].name", i);
                return fail(msg, at, NULL, "%s/%s is already defined by services[%zu]",
                            a->namespace_, a->name, j);
            }
        }
    }
    /* Services are 0..n_services-1; index n_services stands for shared.listen. */
    for (size_t s = 0; s <= cfg->n_services; s++) {
        for (size_t i = 0; i < listen_count(cfg, s); i++) {
            const struct addr *a = listen_addr(cfg, s, i);
            if (addr_port(a) == 0)
                continue;
            for (size_t t = 0; t <= s; t++) {
                for (size_t k = 0; k < (t == s ? i : listen_count(cfg, t)); k++) {
                    if (!addr_equal(a, listen_addr(cfg, t, k)))
                        continue;
                    char here[JSON_PATH_MAX], there[JSON_PATH_MAX];
                    listen_path(cfg, s, i, here, sizeof(here));
                    listen_path(cfg, t, k, there, sizeof(there));
                    return fail(msg, here, NULL, "%s is already used by %s", a->text, there);
                }
            }
            for (size_t t = 0; t < cfg->n_services; t++) {
                for (size_t k = 0; k < cfg->services[t].n_backends; k++) {
                    if (!addr_equal(a, &cfg->services[t].backends[k]))
                        continue;
                    char here[JSON_PATH_MAX];
                    listen_path(cfg, s, i, here, sizeof(here));
                    snprintf(msg, MSG_MAX,
                             "services[%zu].backends[%zu]: %s is holdfast's own listen "
                             "address (%s): requests would loop",
                             t, k, a->text, here);
                    return -1;
                }
            }
        }
    }
    return 0;
}

static int parse_root(const cJSON *root, struct config *cfg, char *msg)
{
    static const char *const keys[] = {"services", "shared", "limits", NULL};
    if (!cJSON_IsObject(root))
        return fail(msg, "", NULL, "the top level must be an object, not %s", json_type_name(root));
    if (check_keys(root, "", keys, msg) < 0)
        return -1;

    const cJSON *services = json_get(root, "services");
    if (!services)
        return fail(msg, "services", NULL, "is required");
    if (!cJSON_IsArray(services))
        return fail(msg, "services", NULL, "must be an array, not %s", json_type_name(services));
    size_t n = (size_t)cJSON_GetArraySize(services);
    if (n == 0)
        return fail(msg, "services", NULL, "must not be empty");
    cfg->services = calloc(n, sizeof(*cfg->services));
    if (!cfg->services)
        return fail(msg, "services", NULL, "out of memory");
    for (const cJSON *svc = services->child; svc; svc = svc->next) {
        char at[32]; /* "services[N]", kept short so the paths under it fit */
        snprintf(at, sizeof(at), "services[%zu]", cfg->n_services);
        if (parse_service(svc, at, &cfg->services[cfg->n_services++], msg) < 0)
            return -1;
    }
    if (parse_shared(root, cfg, msg) < 0 || parse_limits(root, &cfg->limits, msg) < 0)
        return -1;
    return check_unique(cfg, msg);
}

/* "line L, column C" of byte `offset` in `text`, both counted from 1. */
static void line_column(const char *text, size_t offset, size_t *line, size_t *column)
{
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < offset && text[i]; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *column = 1;
        } else {
            (*column)++;
        }
    }
}

int config_parse(const char *json, const char *source, struct config **out, char *err,
                 size_t errlen)
{
    char msg[MSG_MAX];
    const char *end = NULL;
    *out = NULL;
    /* json_parse reports where parsing stopped without cJSON_GetErrorPtr's global. */
    cJSON *root = json_parse(json, strlen(json) + 1, &end, true);
    if (!root) {
        size_t line, column;
        size_t offset = end ? (size_t)(end - json) : 0;
        line_column(json, offset, &line, &column);
        if (json[strspn(json, " \t\r\n")] == '\0')
            snprintf(err, errlen, "%s: the file is empty (expected a JSON object)", source);
        else
            snprintf(err, errlen, "%s: line %zu, column %zu: malformed JSON", source, line, column);
        return -1;
    }
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        cJSON_Delete(root);
        snprintf(err, errlen, "%s: out of memory", source);
        return -1;
    }
    dp_limits_default(&cfg->limits);
    int rc = json_refuse_nul(root, "", msg, MSG_MAX) ? -1 : parse_root(root, cfg, msg);
    cJSON_Delete(root);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", source, msg);
        config_free(cfg);
        return -1;
    }
    *out = cfg;
    return 0;
}

int config_load(const char *file, struct config **out, char *err, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(file, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", file, strerror(errno));
        return -1;
    }
    char *text = malloc(CONFIG_FILE_MAX + 1);
    size_t n = text ? fread(text, 1, CONFIG_FILE_MAX + 1, f) : 0;
    int read_error = ferror(f);
    fclose(f);
    int rc = -1;
    if (!text)
        snprintf(err, errlen, "%s: out of memory", file);
    else if (read_error)
        snprintf(err, errlen, "%s: cannot read", file);
    else if (n > CONFIG_FILE_MAX)
        snprintf(err, errlen, "%s: larger than %d bytes", file, CONFIG_FILE_MAX);
    else if (memchr(text, '\0', n))
        snprintf(err, errlen, "%s: contains a NUL byte (not a JSON text file)", file);
    else {
        text[n] = '\0';
        rc = config_parse(text, file, out, err, errlen);
    }
    free(text);
    return rc;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_services; i++) {
        struct config_service *s = &cfg->services[i];
        free(s->namespace_);
        free(s->name);
        free(s->listen);
        free(s->backends);
        for (char **a = s->wake_argv; a && *a; a++)
            free(*a);
        free(s->wake_argv);
        free(s->readiness_path);
        route_probes_unref(s->probes);
        waiting_page_spec_clear(&s->waiting_page);
    }
    free(cfg->services);
    free(cfg->shared_listen);
    free(cfg);
}
