/*
 * httpans: see httpans.h.
 */
#include "resolver/httpans.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pathprobe_nonce.h"

const char *httpans_reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

static char *build(int status, const char *extra_headers, const char *body, size_t body_len,
                   bool send_body, bool close, size_t *len)
{
    char head[512], length[48] = "";
    /* RFC 9110 8.6: no Content-Length in a 204 (it has no content, and says so by its code) */
    if (status != 204)
        snprintf(length, sizeof(length), "Content-Length: %zu\r\n", body_len);
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: application/json; charset=utf-8\r\n"
                     "%s%s%s\r\n",
                     status, httpans_reason_phrase(status), length,
                     close ? "Connection: close\r\n" : "", extra_headers ? extra_headers : "");
    if (n < 0 || (size_t)n >= sizeof(head))
        return NULL;
    /* 204 and 304 never carry a body; Content-Length stays as the rule's body says. */
    size_t blen = (send_body && status != 204 && status != 304) ? body_len : 0;
    char *out = malloc((size_t)n + blen + 1);
    if (!out)
        return NULL;
    memcpy(out, head, (size_t)n);
    if (blen)
        memcpy(out + n, body, blen);
    out[(size_t)n + blen] = '\0';
    *len = (size_t)n + blen;
    return out;
}

char *httpans_probe(int status, const char *body, size_t body_len, bool head_request, bool close,
                    size_t *len)
{
    if (status == 204)
        body_len = 0;
    return build(status, NULL, body, body_len, !head_request, close, len);
}

char *httpans_datapath_probe(const char *nonce, size_t nonce_len, size_t *len)
{
    char extra[sizeof(PATHPROBE_HEADER) + PATHPROBE_NONCE_MAX + 8];
    if (!pathprobe_nonce_valid(nonce, nonce_len))
        return NULL; /* never echo what was not checked */
    snprintf(extra, sizeof(extra), "%s: %.*s\r\n", PATHPROBE_HEADER, (int)nonce_len, nonce);
    return build(204, extra, NULL, 0, false, true, len);
}

char *httpans_error(int status, const char *error, const char *service, const char *reason,
                    unsigned retry_after_s, size_t *len, ...)
{
    cJSON *obj = cJSON_CreateObject();
    if (!obj)
        return NULL;
    cJSON_AddStringToObject(obj, "error", error);
    if (service)
        cJSON_AddStringToObject(obj, "service", service);
    if (reason)
        cJSON_AddStringToObject(obj, "reason", reason);
    va_list ap;
    va_start(ap, len);
    for (;;) {
        const char *k = va_arg(ap, const char *);
        if (!k)
            break;
        const char *v = va_arg(ap, const char *);
        cJSON_AddStringToObject(obj, k, v ? v : "");
    }
    va_end(ap);
    char *body = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!body)
        return NULL;
    char extra[64] = "";
    if (status == 503)
        snprintf(extra, sizeof(extra), "Retry-After: %u\r\n", retry_after_s);
    char *out = build(status, extra, body, strlen(body), true, true, len);
    free(body);
    return out;
}
