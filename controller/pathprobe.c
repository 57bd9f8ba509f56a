/*
 * pathprobe: the data-path probe the leader sends before removing a last replica. See
 * pathprobe.h.
 */
#include "controller/pathprobe.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/addr.h"
#include "common/xalloc.h"
#include "controller/kube/http.h"

struct pathprobe {
    struct http_request *req;
    pathprobe_done_fn done;
    void *arg;
    char target[INET6_ADDRSTRLEN + 8]; /* "10.96.0.10:80", "[fd00::a]:80": Host and messages */
    char nonce[PATHPROBE_NONCE_MAX + 1];
    long timeout_ms;
};

const char *pathprobe_result_name(enum pathprobe_result r)
{
    switch (r) {
    case PATHPROBE_HOLDFAST:
        return "Holdfast";
    case PATHPROBE_OTHER:
        return "OtherAnswer";
    case PATHPROBE_REFUSED:
        return "Refused";
    case PATHPROBE_RESET:
        return "Reset";
    case PATHPROBE_TIMEOUT:
        return "Timeout";
    case PATHPROBE_ERROR:
        return "Error";
    }
    return "Error";
}

/* An answer head came: holdfast's (204, exactly one echo of our nonce) or someone else's. */
static enum pathprobe_result judge_answer(struct pathprobe *p, struct http_request *req,
                                          long status, char *detail, size_t len)
{
    size_t echoes = 0;
    const char *echo = http_response_header(req, PATHPROBE_HEADER, &echoes);
    bool ours = echo && strcmp(echo, p->nonce) == 0;
    if (status == 204 && echoes == 1 && ours) {
        snprintf(detail, len, "%s answered HTTP 204 with the nonce echoed: a holdfast replica",
                 p->target);
        return PATHPROBE_HOLDFAST;
    }
    if (echoes == 0)
        snprintf(detail, len, "%s answered HTTP %ld without a %s field: not a holdfast replica",
                 p->target, status, PATHPROBE_HEADER);
    else if (echoes > 1)
        snprintf(detail, len, "%s answered HTTP %ld with %zu %s fields", p->target, status, echoes,
                 PATHPROBE_HEADER);
    else if (!ours && pathprobe_nonce_valid(echo, strlen(echo)))
        snprintf(detail, len, "%s answered HTTP %ld with %s \"%s\", not this probe's nonce",
                 p->target, status, PATHPROBE_HEADER, echo);
    else if (!ours) /* not echoed into a message: it came from whatever answered */
        snprintf(detail, len, "%s answered HTTP %ld with an invalid %s value", p->target, status,
                 PATHPROBE_HEADER);
    else
        snprintf(detail, len,
                 "%s answered HTTP %ld with the nonce echoed, where holdfast answers 204",
                 p->target, status);
    return PATHPROBE_OTHER;
}

/* No answer head: which failure. */
static enum pathprobe_result judge_failure(struct pathprobe *p, const struct http_response *resp,
                                           char *detail, size_t len)
{
    int e = resp->os_errno;
    switch (resp->curl_code) {
    case CURLE_COULDNT_CONNECT:
        if (e == ECONNREFUSED) {
            snprintf(detail, len, "connect to %s refused", p->target);
            return PATHPROBE_REFUSED;
        }
        if (e == ETIMEDOUT) {
            snprintf(detail, len, "connect to %s timed out", p->target);
            return PATHPROBE_TIMEOUT;
        }
        snprintf(detail, len, "connect to %s failed: %s", p->target, e ? strerror(e) : resp->error);
        return PATHPROBE_ERROR;
    case CURLE_OPERATION_TIMEDOUT:
        snprintf(detail, len, "no answer from %s within %ld ms (%s)", p->target, p->timeout_ms,
                 resp->error);
        return PATHPROBE_TIMEOUT;
    case CURLE_GOT_NOTHING:
        snprintf(detail, len, "%s closed the connection without answering", p->target);
        return PATHPROBE_RESET;
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
        snprintf(detail, len, "the connection to %s failed before an answer: %s", p->target,
                 e ? strerror(e) : resp->error);
        return PATHPROBE_RESET;
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_UNSUPPORTED_PROTOCOL: /* an HTTP/0.9-looking reply: bytes, but not HTTP/1 */
        snprintf(detail, len, "%s answered, but not with HTTP/1: %s", p->target, resp->error);
        return PATHPROBE_OTHER;
    default:
        snprintf(detail, len, "probe to %s failed: %s", p->target, resp->error);
        return PATHPROBE_ERROR;
    }
}

static void on_probe_done(struct http_request *req, const struct http_response *resp, void *arg)
{
    struct pathprobe *p = arg;
    char detail[512];
    struct pathprobe_answer a = {.status = resp->status, .detail = detail};
    /* A status means an answer head came, even when the transfer failed after it. */
    if (resp->status > 0)
        a.result = judge_answer(p, req, resp->status, detail, sizeof(detail));
    else
        a.result = judge_failure(p, resp, detail, sizeof(detail));
    p->done(&a, p->arg);
    free(p);
}

struct pathprobe *pathprobe_send(struct http_client *http, const char *ip, unsigned port,
                                 const char *nonce, long timeout_ms, pathprobe_done_fn done,
                                 void *arg)
{
    if (!http || !ip || !nonce || !done || port == 0 || port > 65535)
        return NULL;
    size_t nonce_len = strlen(nonce);
    if (!pathprobe_nonce_valid(nonce, nonce_len))
        return NULL;
    struct in6_addr a6;
    struct in_addr a4;
    bool v6 = inet_pton(AF_INET6, ip, &a6) == 1;
    if (!v6 && inet_pton(AF_INET, ip, &a4) != 1)
        return NULL;
    struct pathprobe *p = xcalloc(1, sizeof(*p));
    p->done = done;
    p->arg = arg;
    p->timeout_ms = timeout_ms > 0 ? timeout_ms : PATHPROBE_DEFAULT_TIMEOUT_MS;
    memcpy(p->nonce, nonce, nonce_len + 1);
    /* The address as inet_ntop writes it: one spelling in the URL, Host and messages. */
    char text[INET6_ADDRSTRLEN];
    inet_ntop(v6 ? AF_INET6 : AF_INET, v6 ? (void *)&a6 : (void *)&a4, text, sizeof(text));
    addr_format(p->target, sizeof(p->target), text, port);

    char url[sizeof(p->target) + 16];
    char host[sizeof(p->target) + 8];
    char probe[sizeof(PATHPROBE_HEADER) + PATHPROBE_NONCE_MAX + 4];
    snprintf(url, sizeof(url), "http://%s/", p->target);
    /* curl leaves ":80" out of Host; the probe names the port it was sent to, always. */
    snprintf(host, sizeof(host), "Host: %s", p->target);
    snprintf(probe, sizeof(probe), "%s: %s", PATHPROBE_HEADER, nonce);
    const char *headers[] = {
        host,      "User-Agent: holdfast-pathprobe/" HOLDFAST_VERSION, probe, "Connection: close",
        "Accept:", /* no Accept field (curl adds one by default): only what the probe needs */
        NULL,
    };
    struct http_request_opts o = {
        .method = "GET",
        .url = url,
        .headers = headers,
        .connect_timeout_ms = p->timeout_ms,
        .timeout_ms = p->timeout_ms,
        .no_proxy = true,
        .fresh_connection = true,
        .headers_only = true,
        .on_done = on_probe_done,
        .arg = p,
    };
    p->req = http_request_start(http, &o);
    if (!p->req) {
        free(p);
        return NULL;
    }
    return p;
}

void pathprobe_cancel(struct pathprobe *p)
{
    if (!p)
        return;
    http_request_cancel(p->req);
    free(p);
}
