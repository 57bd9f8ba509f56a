/*
 * probe: parsing and matching probeResponse rules. See probe.h.
 *
 * The matching copies KubeElasti v0.1.30 (resolver/internal/crdcache/spec.go) and what Go's
 * net/http does to a request before that code sees it: the path is url.URL.Path (decoded,
 * query cut off), a target Go would refuse with 400 matches nothing, query parameters come
 * from url.ParseQuery, header values are trimmed of spaces and tabs, and Host and
 * Transfer-Encoding are not headers at all (Go moves or drops them).
 *
 * Parsing enforces the constraints of the ElastiService CRD (enums, maxLength, maxItems), so a
 * rule set accepted here is one the Kubernetes API server accepts too.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "resolver/probe.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/json.h"
#include "common/log.h"

/* Limits from the ElastiService CRD (KubeElasti v0.1.30). Lengths count characters. */
#define PROBE_MAX_RULES 32
#define PROBE_MAX_CONDITIONS 16
#define PROBE_MAX_PATH_CHARS 1024
#define PROBE_MAX_NAME_CHARS 256
#define PROBE_MAX_HEADER_VALUE_CHARS 4096
#define PROBE_MAX_PARAM_VALUE_CHARS 1024

/*
 * PCRE2 backtracks where Go's RE2 does not. These limits bound one attempt at one start
 * position (PCRE2 counts them afresh at each), and the JIT stack; the work budget of the
 * request (PROBE_WORK_BUDGET, counted by auto callouts) bounds everything together.
 */
#define PROBE_MATCH_LIMIT 100000
#define PROBE_DEPTH_LIMIT 1000
#define PROBE_JIT_STACK_MIN (32 * 1024)
#define PROBE_JIT_STACK_MAX (512 * 1024)

/*
 * UTF as Go matches UTF-8 text; invalid UTF-8 in a request is matched, not an error; `$` only
 * at the very end, as in RE2; `\C` refused, as RE2 refuses it. Auto callouts (a call before
 * each pattern item) are how the work of a match is counted: they change no result.
 */
#define PROBE_PCRE2_OPTIONS                                                                        \
    (PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_DOLLAR_ENDONLY | PCRE2_NEVER_BACKSLASH_C |        \
     PCRE2_AUTO_CALLOUT)

/* Decoded path and query pieces of one request live here unless the target is longer. */
#define PROBE_STACK_SCRATCH 2048

/*
 * PCRE2's JIT scans with vector loads that may read a few bytes past the subject (harmless,
 * and never past the page). Zeroing that much after each decoded piece keeps those bytes
 * defined, so the matcher stays clean under valgrind.
 */
#define PROBE_DECODE_PAD 64

#define JSON_PATH_MAX 512

enum path_type {
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
};

/* A compiled regular expression, with where it was written for log lines. */
struct probe_regex {
    pcre2_code *code;
    char *source;    /* the pattern, to weigh its items while matching (item_weight) */
    char *json_path; /* "services[0].probeResponse[1].headers[0].value" */
};

/* One header or query parameter condition. */
struct probe_cond {
    char *name; /* headers: trimmed; query parameters: as written (Go does not trim them) */
    size_t name_len;
    char *value; /* the exact value, or the pattern's source */
    size_t value_len;
    struct probe_regex re; /* code is NULL for an Exact condition */
};

struct probe_rule {
    char *method; /* NULL: any method */
    size_t method_len;
    enum path_type path_type;
    char *path; /* Exact or PathPrefix value ("/" when omitted), or the pattern's source */
    size_t path_len;
    struct probe_regex path_re;
    struct probe_cond *headers;
    size_t n_headers;
    struct probe_cond *params;
    size_t n_params;
    bool never; /* has a condition KubeElasti can never satisfy (see cond_never_matches) */
    struct probe_response response;
};

struct probe_rules {
    struct probe_rule *rules;
    size_t n_rules;
    /*
     * One flag per rule, set the first time one of its regular expressions hits a limit, so a
     * hostile client logs one line per rule rather than one per request. The only state that
     * changes after parsing; atomic because workers share the set.
     */
    atomic_bool *limit_logged;
};

/* ---------------------------------------------------------------------------------------- */
/* Parsing                                                                                  */
/* ---------------------------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, const char *json_path, const char *key, const char *fmt,
                ...) __attribute__((format(printf, 5, 6)));

/* Writes "json_path.key: message" (or "json_path: message" when key is NULL) and returns -1. */
static int fail(char *err, size_t errlen, const char *json_path, const char *key, const char *fmt,
                ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = snprintf(err, errlen, "%s%s%s: ", json_path, key ? "." : "", key ? key : "");
    if (n >= 0 && (size_t)n < errlen)
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

static void path_printf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes a JSON path into out (JSON_PATH_MAX bytes); an absurdly long one is cut short. */
static void path_printf(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, JSON_PATH_MAX, fmt, ap);
    va_end(ap);
}

/* Characters (code points) in a UTF-8 string, as the API server counts maxLength. */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Rejects keys of `obj` that are not in the NULL-terminated `allowed`, and repeated keys. */
static int check_keys(const cJSON *obj, const char *json_path, const char *const *allowed,
                      const char *expected, char *err, size_t errlen)
{
    bool repeated;
    const cJSON *item = json_check_keys(obj, allowed, &repeated);
    if (!item)
        return 0;
    if (repeated)
        return fail(err, errlen, json_path, NULL, "key \"%s\" appears twice", item->string);
    return fail(err, errlen, json_path, NULL, "unknown key \"%s\" (expected %s)", item->string,
                expected);
}

/*
 * Reads an optional string member. Returns 1 with *out set, 0 when absent or JSON null (as the
 * API server treats a null optional field), -1 on error. `max_chars` 0 means no limit.
 */
static int get_string(const cJSON *obj, const char *key, const char *json_path, size_t max_chars,
                      const char **out, char *err, size_t errlen)
{
    const cJSON *item = json_get(obj, key);
    if (!item || cJSON_IsNull(item))
        return 0;
    if (!cJSON_IsString(item) || !item->valuestring)
        return fail(err, errlen, json_path, key, "must be a string");
    if (max_chars && utf8_chars(item->valuestring) > max_chars)
        return fail(err, errlen, json_path, key, "must be at most %zu characters", max_chars);
    *out = item->valuestring;
    return 1;
}

/* Returns the member as an array (NULL when absent or null), or sets *bad on a type error. */
static const cJSON *get_array(const cJSON *obj, const char *key, const char *json_path,
                              size_t max_items, bool *bad, char *err, size_t errlen)
{
    const cJSON *item = json_get(obj, key);
    *bad = false;
    if (!item || cJSON_IsNull(item))
        return NULL;
    if (!cJSON_IsArray(item)) {
        *bad = true;
        fail(err, errlen, json_path, key, "must be an array");
        return NULL;
    }
    if ((size_t)cJSON_GetArraySize(item) > max_items) {
        *bad = true;
        fail(err, errlen, json_path, key, "must have at most %zu items", max_items);
        return NULL;
    }
    return item;
}

static char *dup_string(const char *s, size_t *len)
{
    size_t n = strlen(s);
    char *copy = malloc(n + 1);
    if (copy)
        memcpy(copy, s, n + 1);
    if (len)
        *len = n;
    return copy;
}

static int compile_regex(struct probe_regex *re, const char *pattern, const char *json_path,
                         char *err, size_t errlen)
{
    int code;
    PCRE2_SIZE offset;
    re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PROBE_PCRE2_OPTIONS, &code,
                             &offset, NULL);
    if (!re->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof(msg));
        return fail(err, errlen, json_path, NULL, "invalid regular expression at offset %zu: %s",
                    (size_t)offset, (const char *)msg);
    }
    /* Without JIT support (some architectures) the interpreter runs, under the same limits. */
    pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
    re->source = dup_string(pattern, NULL);
    re->json_path = dup_string(json_path, NULL);
    if (!re->source || !re->json_path)
        return fail(err, errlen, json_path, NULL, "out of memory");
    return 0;
}

static void regex_free(struct probe_regex *re)
{
    pcre2_code_free(re->code);
    free(re->source);
    free(re->json_path);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/*
 * True for a condition KubeElasti accepts but can never satisfy: a blank name, or a header
 * Go's server removes from the request before any handler sees it (Host becomes
 * Request.Host, Transfer-Encoding becomes Request.TransferEncoding).
 */
static bool cond_never_matches(const struct probe_cond *c, bool is_header)
{
    bool blank = true;
    for (size_t i = 0; i < c->name_len; i++)
        blank = blank && is_space(c->name[i]);
    if (blank)
        return true;
    return is_header &&
           (strcasecmp(c->name, "host") == 0 || strcasecmp(c->name, "transfer-encoding") == 0);
}

/* Parses one header (`is_header`) or query parameter condition. */
static int parse_cond(const cJSON *obj, const char *json_path, bool is_header, struct probe_cond *c,
                      char *err, size_t errlen)
{
    static const char *const keys[] = {"name", "value", "type", NULL};
    const char *name = NULL, *value = NULL, *type = NULL;
    size_t max_value = is_header ? PROBE_MAX_HEADER_VALUE_CHARS : PROBE_MAX_PARAM_VALUE_CHARS;
    int rc;

    if (!cJSON_IsObject(obj))
        return fail(err, errlen, json_path, NULL, "must be an object");
    if (check_keys(obj, json_path, keys, "name, value, type", err, errlen) < 0)
        return -1;
    if ((rc = get_string(obj, "name", json_path, PROBE_MAX_NAME_CHARS, &name, err, errlen)) < 0)
        return -1;
    if (rc == 0 || !name)
        return fail(err, errlen, json_path, "name", "is required");
    if ((rc = get_string(obj, "value", json_path, max_value, &value, err, errlen)) < 0)
        return -1;
    if (rc == 0 || !value)
        return fail(err, errlen, json_path, "value", "is required");
    if (get_string(obj, "type", json_path, 0, &type, err, errlen) < 0)
        return -1;
    if (type && strcmp(type, "Exact") != 0 && strcmp(type, "RegularExpression") != 0)
        return fail(err, errlen, json_path, "type", "must be one of Exact, RegularExpression");

    if (is_header) {
        /* KubeElasti trims the header name (strings.TrimSpace), not the parameter name. */
        while (is_space(*name))
            name++;
        c->name = dup_string(name, &c->name_len);
        while (c->name && c->name_len > 0 && is_space(c->name[c->name_len - 1]))
            c->name[--c->name_len] = '\0';
    } else {
        c->name = dup_string(name, &c->name_len);
    }
    c->value = dup_string(value, &c->value_len);
    if (!c->name || !c->value)
        return fail(err, errlen, json_path, NULL, "out of memory");
    if (type && strcmp(type, "RegularExpression") == 0) {
        char sub[JSON_PATH_MAX];
        path_printf(sub, "%s.value", json_path);
        return compile_regex(&c->re, value, sub, err, errlen);
    }
    return 0;
}

static int parse_conds(const cJSON *rule, const char *key, const char *json_path, bool is_header,
                       struct probe_cond **out, size_t *n_out, bool *never, char *err,
                       size_t errlen)
{
    bool bad;
    const cJSON *array = get_array(rule, key, json_path, PROBE_MAX_CONDITIONS, &bad, err, errlen);
    if (bad)
        return -1;
    if (!array || cJSON_GetArraySize(array) == 0)
        return 0;
    *out = calloc((size_t)cJSON_GetArraySize(array), sizeof(**out));
    if (!*out)
        return fail(err, errlen, json_path, NULL, "out of memory");
    for (const cJSON *item = array->child; item; item = item->next) {
        char sub[JSON_PATH_MAX];
        path_printf(sub, "%s.%s[%zu]", json_path, key, *n_out);
        struct probe_cond *c = &(*out)[(*n_out)++];
        if (parse_cond(item, sub, is_header, c, err, errlen) < 0)
            return -1;
        if (cond_never_matches(c, is_header)) {
            *never = true;
            log_warn("probeResponse rule can never match, as in KubeElasti", "condition=%s name=%s",
                     sub, c->name);
        }
    }
    return 0;
}

static int parse_path(const cJSON *rule, const char *json_path, struct probe_rule *r, char *err,
                      size_t errlen)
{
    static const char *const keys[] = {"type", "value", NULL};
    const cJSON *obj = json_get(rule, "path");
    const char *type = NULL, *value = NULL;
    char sub[JSON_PATH_MAX];
    path_printf(sub, "%s.path", json_path);

    r->path_type = PATH_PREFIX;
    if (obj && !cJSON_IsNull(obj)) {
        if (!cJSON_IsObject(obj))
            return fail(err, errlen, sub, NULL, "must be an object");
        if (check_keys(obj, sub, keys, "type, value", err, errlen) < 0)
            return -1;
        if (get_string(obj, "type", sub, 0, &type, err, errlen) < 0)
            return -1;
        if (get_string(obj, "value", sub, PROBE_MAX_PATH_CHARS, &value, err, errlen) < 0)
            return -1;
    }
    if (type) {
        if (strcmp(type, "Exact") == 0)
            r->path_type = PATH_EXACT;
        else if (strcmp(type, "RegularExpression") == 0)
            r->path_type = PATH_REGEX;
        else if (strcmp(type, "PathPrefix") != 0)
            return fail(err, errlen, sub, "type",
                        "must be one of Exact, PathPrefix, RegularExpression");
    }
    /* An omitted or empty PathPrefix value is "/"; an omitted Exact value or pattern is "". */
    if (!value || (r->path_type == PATH_PREFIX && value[0] == '\0'))
        value = r->path_type == PATH_PREFIX ? "/" : "";
    r->path = dup_string(value, &r->path_len);
    if (!r->path)
        return fail(err, errlen, sub, NULL, "out of memory");
    if (r->path_type == PATH_REGEX) {
        path_printf(sub, "%s.path.value", json_path);
        return compile_regex(&r->path_re, value, sub, err, errlen);
    }
    return 0;
}

static int parse_response(const cJSON *rule, const char *json_path, struct probe_rule *r, char *err,
                          size_t errlen)
{
    static const char *const keys[] = {"status", "body", NULL};
    static const int allowed[] = {200, 204, 400, 401, 403, 404, 500, 502, 503, 504};
    const cJSON *obj = json_get(rule, "response");
    const char *body = "";
    char sub[JSON_PATH_MAX];
    path_printf(sub, "%s.response", json_path);

    if (!obj || cJSON_IsNull(obj))
        return fail(err, errlen, sub, NULL, "is required");
    if (!cJSON_IsObject(obj))
        return fail(err, errlen, sub, NULL, "must be an object");
    if (check_keys(obj, sub, keys, "status, body", err, errlen) < 0)
        return -1;

    /*
     * The CRD marks status and body required, but KubeElasti's resolver answers 200 for an
     * omitted status and an empty body for an omitted body: we accept both omissions.
     */
    r->response.status = 200;
    const cJSON *status = json_get(obj, "status");
    if (status && !cJSON_IsNull(status)) {
        bool ok = false;
        if (!cJSON_IsNumber(status))
            return fail(err, errlen, sub, "status", "must be an integer");
        for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
            ok = ok || status->valuedouble == allowed[i];
        if (!ok)
            return fail(err, errlen, sub, "status",
                        "must be one of 200, 204, 400, 401, 403, 404, 500, 502, 503, "
                        "504");
        r->response.status = status->valueint;
    }
    if (get_string(obj, "body", sub, 0, &body, err, errlen) < 0)
        return -1;
    char *copy = dup_string(body, &r->response.body_len);
    if (!copy)
        return fail(err, errlen, sub, NULL, "out of memory");
    r->response.body = copy;
    return 0;
}

static int parse_rule(const cJSON *obj, const char *json_path, struct probe_rule *r, char *err,
                      size_t errlen)
{
    static const char *const keys[] = {"path",   "headers",  "queryParams",
                                       "method", "response", NULL};
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH", NULL};
    const char *method = NULL;

    if (!cJSON_IsObject(obj))
        return fail(err, errlen, json_path, NULL, "must be an object");
    if (check_keys(obj, json_path, keys, "path, headers, queryParams, method, response", err,
                   errlen) < 0)
        return -1;
    if (get_string(obj, "method", json_path, 0, &method, err, errlen) < 0)
        return -1;
    if (method) {
        bool ok = false;
        for (const char *const *m = methods; *m; m++)
            ok = ok || strcmp(method, *m) == 0;
        if (!ok)
            return fail(err, errlen, json_path, "method",
                        "must be one of GET, HEAD, POST, PUT, DELETE, CONNECT, "
                        "OPTIONS, TRACE, PATCH");
        r->method = dup_string(method, &r->method_len);
        if (!r->method)
            return fail(err, errlen, json_path, NULL, "out of memory");
    }
    if (parse_path(obj, json_path, r, err, errlen) < 0)
        return -1;
    if (parse_conds(obj, "headers", json_path, true, &r->headers, &r->n_headers, &r->never, err,
                    errlen) < 0)
        return -1;
    if (parse_conds(obj, "queryParams", json_path, false, &r->params, &r->n_params, &r->never, err,
                    errlen) < 0)
        return -1;
    return parse_response(obj, json_path, r, err, errlen);
}

struct probe_rules *probe_rules_parse(const cJSON *array, const char *path, char *err,
                                      size_t errlen)
{
    struct probe_rules *set = calloc(1, sizeof(*set));
    if (!set) {
        fail(err, errlen, path, NULL, "out of memory");
        return NULL;
    }
    if (!array || cJSON_IsNull(array))
        return set;
    if (json_refuse_nul(array, path, err, errlen))
        goto error;
    if (!cJSON_IsArray(array)) {
        fail(err, errlen, path, NULL, "must be an array");
        goto error;
    }
    size_t n = (size_t)cJSON_GetArraySize(array);
    if (n > PROBE_MAX_RULES) {
        fail(err, errlen, path, NULL, "must have at most %d items", PROBE_MAX_RULES);
        goto error;
    }
    if (n == 0)
        return set;
    set->rules = calloc(n, sizeof(*set->rules));
    set->limit_logged = calloc(n, sizeof(*set->limit_logged));
    if (!set->rules || !set->limit_logged) {
        fail(err, errlen, path, NULL, "out of memory");
        goto error;
    }
    for (const cJSON *item = array->child; item; item = item->next) {
        char sub[JSON_PATH_MAX];
        path_printf(sub, "%s[%zu]", path, set->n_rules);
        atomic_init(&set->limit_logged[set->n_rules], false);
        if (parse_rule(item, sub, &set->rules[set->n_rules++], err, errlen) < 0)
            goto error;
    }
    return set;

error:
    probe_rules_free(set);
    return NULL;
}

size_t probe_rules_count(const struct probe_rules *rules)
{
    return rules ? rules->n_rules : 0;
}

static void conds_free(struct probe_cond *conds, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(conds[i].name);
        free(conds[i].value);
        regex_free(&conds[i].re);
    }
    free(conds);
}

void probe_rules_free(struct probe_rules *rules)
{
    if (!rules)
        return;
    for (size_t i = 0; i < rules->n_rules; i++) {
        struct probe_rule *r = &rules->rules[i];
        free(r->method);
        free(r->path);
        regex_free(&r->path_re);
        conds_free(r->headers, r->n_headers);
        conds_free(r->params, r->n_params);
        free((char *)r->response.body);
    }
    free(rules->rules);
    free(rules->limit_logged);
    free(rules);
}

/* ---------------------------------------------------------------------------------------- */
/* Regular expression matching                                                              */
/* ---------------------------------------------------------------------------------------- */

/*
 * What a thread needs to run PCRE2: match data (one pair is enough, we only ask whether it
 * matches), a match context carrying the limits, and a JIT stack. None of them may be shared
 * between threads that match at the same time, so each thread makes its own on its first
 * regular expression and frees it when it exits (the key's destructor).
 */
struct regex_scratch {
    pcre2_match_data *match_data;
    pcre2_match_context *match_context;
    pcre2_jit_stack *jit_stack;
};

/* Process-wide only to register the destructor above; created once, never changed. */
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static pthread_key_t scratch_key;
static bool scratch_key_ok;
static _Thread_local struct regex_scratch *thread_scratch;

static void scratch_free(void *p)
{
    struct regex_scratch *s = p;
    if (!s)
        return;
    pcre2_match_data_free(s->match_data);
    pcre2_match_context_free(s->match_context);
    pcre2_jit_stack_free(s->jit_stack);
    free(s);
}

static void scratch_key_create(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
}

static struct regex_scratch *scratch_get(void)
{
    if (thread_scratch)
        return thread_scratch;
    pthread_once(&scratch_once, scratch_key_create);
    struct regex_scratch *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->match_data = pcre2_match_data_create(1, NULL);
    s->match_context = pcre2_match_context_create(NULL);
    s->jit_stack = pcre2_jit_stack_create(PROBE_JIT_STACK_MIN, PROBE_JIT_STACK_MAX, NULL);
    if (!s->match_data || !s->match_context) {
        scratch_free(s);
        return NULL;
    }
    pcre2_set_match_limit(s->match_context, PROBE_MATCH_LIMIT);
    pcre2_set_depth_limit(s->match_context, PROBE_DEPTH_LIMIT);
    if (s->jit_stack)
        pcre2_jit_stack_assign(s->match_context, NULL, s->jit_stack);
    if (scratch_key_ok)
        pthread_setspecific(scratch_key, s);
    thread_scratch = s;
    return s;
}

/* ---------------------------------------------------------------------------------------- */
/* The work budget of one request                                                           */
/* ---------------------------------------------------------------------------------------- */

/*
 * What one request may still spend (PROBE_WORK_BUDGET), threaded through every condition of
 * every rule. PCRE2 counts its match limit afresh at each start position of a search, so a
 * search that cannot match costs up to (start positions x limit): only a count kept here, across
 * the attempts and the calls, bounds the request.
 */
struct work {
    size_t left;  /* units still allowed */
    bool spent;   /* the budget ran out: costly conditions no longer hold */
    bool gave_up; /* the budget or a PCRE2 limit stopped a condition */
    /* The search in progress, for regex_step. */
    const struct probe_regex *re;
    size_t pos; /* subject offset at its previous step */
};

/* Takes `units` from the budget. False when they are not all there: the budget is spent. */
static bool work_take(struct work *w, size_t units)
{
    if (w->spent || units > w->left) {
        w->left = 0;
        w->spent = w->gave_up = true;
        return false;
    }
    w->left -= units;
    return true;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/*
 * Subject bytes a pattern item may compare before the next step can see it move: the
 * minimum of a counted repeat (a{500} fails after comparing up to 499 bytes, and nothing is
 * called back in between) or, for a backreference, the whole subject. 0 for other items,
 * among them the end of a counted group ("){500}"), whose inside takes steps of its own.
 * Reads the item's text; a misreading only changes what is charged, never a result.
 */
static size_t item_weight(const char *item, size_t len, size_t subject_len)
{
    if (len == 0 || item[0] == ')')
        return 0;
    if (len >= 2 && item[0] == '\\' &&
        ((item[1] >= '1' && item[1] <= '9') || item[1] == 'g' || item[1] == 'k'))
        return subject_len; /* \1, \g{-1}, \k<name> */
    if (len >= 4 && memcmp(item, "(?P=", 4) == 0)
        return subject_len;
    if (len > 0 && (item[len - 1] == '+' || item[len - 1] == '?'))
        len--; /* possessive or lazy */
    if (len < 3 || item[len - 1] != '}')
        return 0;
    size_t open = len - 1;
    while (open > 0 && item[open] != '{')
        open--;
    if (item[open] != '{' || open == 0 || !is_digit(item[open + 1]))
        return 0;
    /* \x{41}, \o{101}: a code point, not a repeat. */
    if (open >= 2 && item[open - 2] == '\\' && (item[open - 1] == 'x' || item[open - 1] == 'o'))
        return 0;
    size_t min = 0;
    for (size_t i = open + 1; i < len - 1 && is_digit(item[i]); i++)
        min = min * 10 + (size_t)(item[i] - '0');
    return min;
}

/*
 * PCRE2 calls this before each pattern item it enters (auto callouts), in every attempt. One
 * unit for the step, one per subject byte moved over since the previous step (a greedy scan,
 * a skip to the next start position), and the item's weight. Returning a negative value ends
 * the whole match with that value.
 */
static int regex_step(pcre2_callout_block *cb, void *arg)
{
    struct work *w = arg;
    size_t pos = cb->current_position;
    size_t moved = pos > w->pos ? pos - w->pos : w->pos - pos;
    w->pos = pos;
    size_t weight =
        item_weight(w->re->source + cb->pattern_position, cb->next_item_length, cb->subject_length);
    return work_take(w, 1 + moved + weight) ? 0 : PCRE2_ERROR_CALLOUT;
}

/*
 * Unanchored search, as Go's Regexp.MatchString, within the request's budget: the call and the
 * subject's bytes up front (PCRE2 scans the subject before and between attempts), then every
 * step. Any failure other than "no match" (the budget spent, a PCRE2 limit, no memory) counts as
 * no match and is logged once per rule.
 */
static bool regex_search(const struct probe_rules *set, size_t rule_index, struct work *w,
                         const struct probe_regex *re, const char *subject, size_t len)
{
    if (!work_take(w, PROBE_REGEX_CALL_COST + len))
        return false;
    struct regex_scratch *s = scratch_get();
    int rc = PCRE2_ERROR_NOMEMORY;
    if (s) {
        w->re = re;
        w->pos = 0;
        pcre2_set_callout(s->match_context, regex_step, w);
        rc = pcre2_match(re->code, (PCRE2_SPTR)subject, len, 0, 0, s->match_data, s->match_context);
    }
    if (rc >= 0)
        return true;
    if (rc == PCRE2_ERROR_NOMATCH)
        return false;
    w->gave_up = true;
    if (!atomic_exchange_explicit(&set->limit_logged[rule_index], true, memory_order_relaxed)) {
        PCRE2_UCHAR msg[256];
        if (rc == PCRE2_ERROR_CALLOUT)
            snprintf((char *)msg, sizeof(msg), "work budget of the request (%d units) spent",
                     PROBE_WORK_BUDGET);
        else
            pcre2_get_error_message(rc, msg, sizeof(msg));
        log_warn("probeResponse regular expression gave up on a request, counted as no match "
                 "(logged once per rule)",
                 "regex=%s error=%s subject_bytes=%zu", re->json_path, (const char *)msg, len);
    }
    return false;
}

/* ---------------------------------------------------------------------------------------- */
/* Request matching                                                                         */
/* ---------------------------------------------------------------------------------------- */

/* Path and raw query of a request-target, borrowed from the request. */
struct target {
    const char *path; /* still percent-encoded */
    size_t path_len;
    const char *query; /* after the first '?', NULL when there is none */
    size_t query_len;
};

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/*
 * Splits a request-target as Go's url.ParseRequestURI (with net/http's CONNECT rule) does:
 * origin-form "/p?q", "*", absolute-form "http://host/p?q" (path after the authority, "" when
 * none), CONNECT's "host:port" (path ""). Returns false for a target Go refuses (400).
 */
static bool target_split(const struct probe_request *req, struct target *t)
{
    const char *s = req->target;
    size_t n = req->target_len;

    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    }
    if (n == 1 && s[0] == '*') {
        *t = (struct target){.path = s, .path_len = 1};
        return true;
    }
    const char *q = memchr(s, '?', n);
    size_t rest_len = q ? (size_t)(q - s) : n;
    t->query = q ? q + 1 : NULL;
    t->query_len = q ? n - rest_len - 1 : 0;
    t->path = s;
    t->path_len = rest_len;
    if (n == 0)
        return false;
    if (s[0] == '/')
        return true;

    bool connect = req->method_len == 7 && strncmp(req->method, "CONNECT", 7) == 0;
    size_t i = 0;
    if (is_alpha(s[0])) {
        for (i = 1; i < rest_len; i++) {
            char c = s[i];
            if (!(is_alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.'))
                break;
        }
    }
    if (connect || i == 0 || i >= rest_len || s[i] != ':') {
        t->path_len = 0; /* CONNECT authority-form: no path */
        return connect;
    }
    const char *rest = s + i + 1;
    size_t len = rest_len - i - 1;
    if (len >= 2 && rest[0] == '/' && rest[1] == '/') {
        const char *slash = memchr(rest + 2, '/', len - 2);
        t->path = slash ? slash : rest + len;
        t->path_len = slash ? (size_t)(rest + len - slash) : 0;
    } else if (len >= 1 && rest[0] == '/') {
        t->path = rest;
        t->path_len = len;
    } else {
        t->path_len = 0; /* opaque, "mailto:x" */
    }
    return true;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Percent-decodes s into out, as Go's url unescape: "%zz" or a truncated "%4" is an error;
 * `plus_is_space` for query components. out has room for n + PROBE_DECODE_PAD bytes; the
 * bytes after the result are zeroed (see PROBE_DECODE_PAD). Returns the length or -1.
 */
static long percent_decode(const char *s, size_t n, char *out, bool plus_is_space)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hex_value(s[i + 1]), l = hex_value(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else if (s[i] == '+' && plus_is_space) {
            out[o++] = ' ';
        } else {
            out[o++] = s[i];
        }
    }
    memset(out + o, 0, PROBE_DECODE_PAD);
    return (long)o;
}

static bool bytes_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* Segment-wise PathPrefix, as KubeElasti's pathPrefix (Gateway API HTTPPathMatch). */
static bool path_prefix_matches(const char *path, size_t len, const char *prefix, size_t plen)
{
    if (plen == 0 || (plen == 1 && prefix[0] == '/'))
        return len > 0 && path[0] == '/';
    if (len < plen || memcmp(path, prefix, plen) != 0)
        return false;
    return len == plen || prefix[plen - 1] == '/' || path[plen] == '/';
}

/* A regular expression charges its own work; an exact comparison costs the value's length. */
static bool value_matches(const struct probe_rules *set, size_t rule_index, struct work *w,
                          const struct probe_cond *c, const char *v, size_t len)
{
    if (c->re.code)
        return regex_search(set, rule_index, w, &c->re, v, len);
    return work_take(w, len) && bytes_equal(v, len, c->value, c->value_len);
}

/* Go's textproto trims spaces and tabs around a header value. */
static void trim_ows(const char **v, size_t *len)
{
    while (*len > 0 && (**v == ' ' || **v == '\t')) {
        (*v)++;
        (*len)--;
    }
    while (*len > 0 && ((*v)[*len - 1] == ' ' || (*v)[*len - 1] == '\t'))
        (*len)--;
}

static bool name_is(const struct probe_header *h, const char *name, size_t len)
{
    return h->name_len == len && strncasecmp(h->name, name, len) == 0;
}

/* A header condition holds when any value of that header (it may repeat) matches. Each header
 * looked at costs a unit. */
static bool header_matches(const struct probe_rules *set, size_t rule_index, struct work *w,
                           const struct probe_cond *c, const struct probe_request *req)
{
    bool present = false;
    for (size_t i = 0; i < req->n_headers; i++) {
        const struct probe_header *h = &req->headers[i];
        if (!work_take(w, 1))
            return false;
        if (!name_is(h, c->name, c->name_len))
            continue;
        const char *v = h->value;
        size_t len = h->value_len;
        trim_ows(&v, &len);
        present = true;
        if (value_matches(set, rule_index, w, c, v, len))
            return true;
    }
    /* Go's server gives a request with "Pragma: no-cache" and no Cache-Control one. */
    if (!present && c->name_len == 13 && strcasecmp(c->name, "cache-control") == 0) {
        for (size_t i = 0; i < req->n_headers; i++) {
            const struct probe_header *h = &req->headers[i];
            if (!work_take(w, 1))
                return false;
            if (!name_is(h, "pragma", 6))
                continue;
            const char *v = h->value;
            size_t len = h->value_len;
            trim_ows(&v, &len);
            return bytes_equal(v, len, "no-cache", 8) &&
                   value_matches(set, rule_index, w, c, "no-cache", 8);
        }
    }
    return false;
}

/*
 * A query parameter condition holds when any value of that parameter matches. Pairs are read
 * as Go's url.ParseQuery: split on '&'; a pair containing ';' or with a malformed escape in
 * its name or value is skipped; "k" alone has the value "". key_buf and value_buf have room
 * for the whole query. Each pair looked at costs a unit and its length (it is decoded).
 */
static bool param_matches(const struct probe_rules *set, size_t rule_index, struct work *w,
                          const struct probe_cond *c, const struct target *t, char *key_buf,
                          char *value_buf)
{
    if (!t->query)
        return false;
    const char *end = t->query + t->query_len;
    for (const char *pair = t->query, *pair_end; pair;
         pair = pair_end < end ? pair_end + 1 : NULL) {
        const char *amp = memchr(pair, '&', (size_t)(end - pair));
        pair_end = amp ? amp : end;
        size_t pair_len = (size_t)(pair_end - pair);
        if (!work_take(w, 1 + pair_len))
            return false;
        if (pair_len == 0 || memchr(pair, ';', pair_len))
            continue;
        const char *eq = memchr(pair, '=', pair_len);
        size_t key_len = eq ? (size_t)(eq - pair) : pair_len;
        long k = percent_decode(pair, key_len, key_buf, true);
        if (k < 0 || !bytes_equal(key_buf, (size_t)k, c->name, c->name_len))
            continue;
        const char *raw_value = eq ? eq + 1 : pair_end;
        long v = percent_decode(raw_value, (size_t)(pair_end - raw_value), value_buf, true);
        if (v >= 0 && value_matches(set, rule_index, w, c, value_buf, (size_t)v))
            return true;
    }
    return false;
}

static bool rule_matches(const struct probe_rules *set, size_t i, struct work *w,
                         const struct probe_request *req, const char *path, size_t path_len,
                         const struct target *t, char *key_buf, char *value_buf)
{
    const struct probe_rule *r = &set->rules[i];
    if (r->never)
        return false;
    if (r->method && !(r->method_len == req->method_len &&
                       strncasecmp(r->method, req->method, req->method_len) == 0))
        return false;

    bool path_ok = false;
    switch (r->path_type) {
    case PATH_EXACT:
        path_ok = bytes_equal(path, path_len, r->path, r->path_len);
        break;
    case PATH_PREFIX:
        path_ok = path_prefix_matches(path, path_len, r->path, r->path_len);
        break;
    case PATH_REGEX:
        path_ok = regex_search(set, i, w, &r->path_re, path, path_len);
        break;
    }
    if (!path_ok)
        return false;

    for (size_t h = 0; h < r->n_headers; h++) {
        if (!header_matches(set, i, w, &r->headers[h], req))
            return false;
    }
    for (size_t p = 0; p < r->n_params; p++) {
        if (!param_matches(set, i, w, &r->params[p], t, key_buf, value_buf))
            return false;
    }
    return true;
}

const struct probe_response *probe_match(const struct probe_rules *rules,
                                         const struct probe_request *req)
{
    if (req->work)
        *req->work = (struct probe_work){0};
    if (!rules || rules->n_rules == 0)
        return NULL;
    struct target t;
    if (!target_split(req, &t))
        return NULL;

    /* Decoded text is never longer than encoded: path, then one key and one value. */
    char stack_buf[PROBE_STACK_SCRATCH];
    size_t need = t.path_len + 2 * t.query_len + 3 * PROBE_DECODE_PAD;
    char *buf = need <= sizeof(stack_buf) ? stack_buf : malloc(need);
    if (!buf)
        return NULL;

    const struct probe_response *found = NULL;
    struct work w = {.left = PROBE_WORK_BUDGET};
    long path_len = percent_decode(t.path, t.path_len, buf, false);
    if (path_len >= 0) {
        char *key_buf = buf + t.path_len + PROBE_DECODE_PAD;
        char *value_buf = key_buf + t.query_len + PROBE_DECODE_PAD;
        for (size_t i = 0; i < rules->n_rules && !found; i++) {
            if (rule_matches(rules, i, &w, req, buf, (size_t)path_len, &t, key_buf, value_buf))
                found = &rules->rules[i].response;
        }
    }
    if (buf != stack_buf)
        free(buf);
    if (req->work)
        *req->work = (struct probe_work){.used = PROBE_WORK_BUDGET - w.left, .gave_up = w.gave_up};
    return found;
}
