/*
 * waitpage: the waiting page for browsers. See waitpage.h; the setting's parser is declared in
 * dataplane.h, since both control planes read it.
 */
#include "resolver/waitpage.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "resolver/dataplane.h"

void waiting_page_spec_clear(struct waiting_page_spec *p)
{
    free(p->html);
    memset(p, 0, sizeof(*p));
    p->retry_after_s = WAITING_PAGE_DEFAULT_RETRY_S;
}

int waiting_page_parse(const cJSON *obj, const char *path, struct waiting_page_spec *out, char *err,
                       size_t errlen)
{
    static const char *const keys[] = {"enabled", "retryAfterSeconds", "html", NULL};
    waiting_page_spec_clear(out);
    if (!obj || cJSON_IsNull(obj))
        return 0;
    if (!cJSON_IsObject(obj)) {
        snprintf(err, errlen, "%s: must be an object, not %s", path, json_type_name(obj));
        return -1;
    }
    bool repeated;
    const cJSON *bad = json_check_keys(obj, keys, &repeated);
    if (bad && repeated) {
        snprintf(err, errlen, "%s: key \"%s\" appears twice", path, bad->string);
        return -1;
    }
    if (bad) {
        char expected[128];
        json_keys_join(keys, expected, sizeof(expected));
        snprintf(err, errlen, "%s: unknown key \"%s\" (expected one of %s)", path, bad->string,
                 expected);
        return -1;
    }
    const cJSON *enabled = json_get(obj, "enabled");
    if (enabled && !cJSON_IsBool(enabled)) {
        snprintf(err, errlen, "%s.enabled: must be true or false, not %s", path,
                 json_type_name(enabled));
        return -1;
    }
    const cJSON *retry = json_get(obj, "retryAfterSeconds");
    if (retry) {
        double v = cJSON_IsNumber(retry) ? retry->valuedouble : 0;
        if (!cJSON_IsNumber(retry) || v < 1 || v > WAITING_PAGE_MAX_RETRY_S ||
            v != (double)(int)v) {
            snprintf(err, errlen, "%s.retryAfterSeconds: must be an integer from 1 to %d%s%s", path,
                     WAITING_PAGE_MAX_RETRY_S, cJSON_IsNumber(retry) ? "" : ", not ",
                     cJSON_IsNumber(retry) ? "" : json_type_name(retry));
            return -1;
        }
        out->retry_after_s = (unsigned)v;
    }
    const cJSON *html = json_get(obj, "html");
    if (html) {
        if (!cJSON_IsString(html) || !html->valuestring) {
            snprintf(err, errlen, "%s.html: must be a string, not %s", path, json_type_name(html));
            return -1;
        }
        size_t n = strlen(html->valuestring);
        if (n == 0) {
            snprintf(err, errlen, "%s.html: must not be empty (leave it out for the built-in page)",
                     path);
            return -1;
        }
        if (n > WAITING_PAGE_MAX_HTML) {
            snprintf(err, errlen, "%s.html: %zu bytes, more than the %d allowed", path, n,
                     WAITING_PAGE_MAX_HTML);
            return -1;
        }
        out->html = malloc(n);
        if (!out->html) {
            snprintf(err, errlen, "%s.html: out of memory", path);
            return -1;
        }
        memcpy(out->html, html->valuestring, n);
        out->html_len = n;
    }
    out->enabled = cJSON_IsTrue(enabled);
    return 0;
}

/* Appends s with &, <, >, " and ' escaped to buf[*len] (buf has room: 6 bytes per char). */
static void html_escape(char *buf, size_t *len, const char *s)
{
    for (; *s; s++) {
        const char *e = NULL;
        switch (*s) {
        case '&':
            e = "&amp;";
            break;
        case '<':
            e = "&lt;";
            break;
        case '>':
            e = "&gt;";
            break;
        case '"':
            e = "&quot;";
            break;
        case '\'':
            e = "&#39;";
            break;
        default:
            buf[(*len)++] = *s;
            continue;
        }
        size_t n = strlen(e);
        memcpy(buf + *len, e, n);
        *len += n;
    }
}

/* The built-in page: the service's name, that it is starting, and a refresh. */
static char *builtin_page(const char *ns, const char *name, unsigned retry_after_s, size_t *len)
{
    static const char part1[] =
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta http-equiv=\"refresh\" content=\"";
    static const char part2[] =
        "\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        "<title>Starting ";
    static const char part3[] =
        "</title>\n<style>body{font-family:system-ui,sans-serif;max-width:36em;"
        "margin:15vh auto;padding:0 1em;color:#222}</style>\n</head>\n<body>\n"
        "<h1>Starting up</h1>\n<p><strong>";
    static const char part4[] = "</strong> (namespace ";
    static const char part5[] = ") is starting. This page reloads itself and shows the service "
                                "as soon as it is ready.</p>\n</body>\n</html>\n";
    size_t ns_len = strlen(ns), name_len = strlen(name);
    size_t cap = sizeof(part1) + sizeof(part2) + sizeof(part3) + sizeof(part4) + sizeof(part5) +
                 16 + 6 * (2 * name_len + ns_len);
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t n = 0;
#define PUT(lit)                                                                                   \
    do {                                                                                           \
        memcpy(out + n, lit, sizeof(lit) - 1);                                                     \
        n += sizeof(lit) - 1;                                                                      \
    } while (0)
    PUT(part1);
    n += (size_t)snprintf(out + n, cap - n, "%u", retry_after_s);
    PUT(part2);
    html_escape(out, &n, name);
    PUT(part3);
    html_escape(out, &n, name);
    PUT(part4);
    html_escape(out, &n, ns);
    PUT(part5);
#undef PUT
    *len = n;
    return out;
}

struct waitpage *waitpage_new(const char *ns, const char *name, const char *html, size_t html_len,
                              unsigned retry_after_s)
{
    struct waitpage *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->retry_after_s = retry_after_s;
    if (html) {
        p->body = malloc(html_len ? html_len : 1);
        if (p->body)
            memcpy(p->body, html, html_len);
        p->body_len = html_len;
    } else {
        p->body = builtin_page(ns, name, retry_after_s, &p->body_len);
    }
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 503 Service Unavailable\r\n"
                     "Content-Type: text/html; charset=utf-8\r\n"
                     "Content-Length: %zu\r\n"
                     "Retry-After: %u\r\n"
                     "Refresh: %u\r\n"
                     "Cache-Control: no-store\r\n",
                     p->body_len, retry_after_s, retry_after_s);
    p->head = p->body && n > 0 && (size_t)n < sizeof(head) ? malloc((size_t)n) : NULL;
    if (!p->head) {
        waitpage_free(p);
        return NULL;
    }
    memcpy(p->head, head, (size_t)n);
    p->head_len = (size_t)n;
    return p;
}

void waitpage_free(struct waitpage *p)
{
    if (!p)
        return;
    free(p->head);
    free(p->body);
    free(p);
}

char *waitpage_answer(const struct waitpage *p, bool head_request, bool close, size_t *len)
{
    static const char conn_close[] = "Connection: close\r\n";
    size_t close_len = close ? sizeof(conn_close) - 1 : 0;
    size_t body_len = head_request ? 0 : p->body_len;
    size_t n = p->head_len + close_len + 2 + body_len;
    char *out = malloc(n);
    if (!out)
        return NULL;
    memcpy(out, p->head, p->head_len);
    memcpy(out + p->head_len, conn_close, close_len);
    memcpy(out + p->head_len + close_len, "\r\n", 2);
    if (body_len)
        memcpy(out + p->head_len + close_len + 2, p->body, body_len);
    *len = n;
    return out;
}
