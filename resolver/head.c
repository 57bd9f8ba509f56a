/*
 * head: HTTP/1 request heads: capture, validation, and what is read from them. See head.h.
 */
#include "resolver/head.h"

#include <pthread.h>
#include <string.h>
#include <strings.h>

/* ---- parsing: llhttp callbacks ---- */

static struct head_parser *parser_of(llhttp_t *p)
{
    return p->data;
}

static void span_extend(struct head_parser *hp, struct head_span *s, const char *at, size_t len)
{
    if (s->len == 0)
        s->off = (size_t)(at - hp->msg);
    s->len += len; /* pieces are contiguous: every byte of the head stays in the buffer */
}

static int on_method(llhttp_t *p, const char *at, size_t len)
{
    struct head_parser *hp = parser_of(p);
    if (hp->capture)
        span_extend(hp, &hp->head->method, at, len);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct head_parser *hp = parser_of(p);
    if (hp->capture)
        span_extend(hp, &hp->head->url, at, len);
    return 0;
}

/* A check of ours failed: the message is refused (400) with this reason. */
static int refuse(struct head_parser *hp, const char *reason)
{
    hp->bad_reason = reason;
    return -1;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct head_parser *hp = parser_of(p);
    struct head_check *k = &hp->check;
    for (size_t i = 0; i < len; i++) {
        if (k->name_len < sizeof(k->name))
            k->name[k->name_len] = (char)(at[i] | 0x20); /* token chars: ASCII lower case */
        k->name_len++;
    }
    struct head *h = hp->head;
    if (!hp->capture)
        return 0;
    if (h->in_value || (h->n_fields == 0 && h->names[0].len == 0)) {
        if (h->in_value)
            h->n_fields++;
        h->in_value = false;
        if (h->n_fields >= HEAD_MAX_FIELDS) {
            h->too_many = true;
            return 0;
        }
        h->names[h->n_fields] = (struct head_span){0, 0};
        h->values[h->n_fields] = (struct head_span){0, 0};
    }
    if (!h->too_many)
        span_extend(hp, &h->names[h->n_fields], at, len);
    return 0;
}

static int on_header_field_complete(llhttp_t *p)
{
    struct head_parser *hp = parser_of(p);
    struct head_check *k = &hp->check;
    k->kind = HEAD_FIELD_OTHER;
    k->te_len = 0;
    k->value_pieces = 0;
    if (!k->in_trailers && k->name_len == 4 && !memcmp(k->name, "host", 4)) {
        k->kind = HEAD_FIELD_HOST;
        k->hosts++;
    } else if (!k->in_trailers && k->name_len == 17 && !memcmp(k->name, "transfer-encoding", 17)) {
        k->kind = HEAD_FIELD_TRANSFER_ENCODING;
    }
    k->name_len = 0;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct head_parser *hp = parser_of(p);
    struct head_check *k = &hp->check;
    /* llhttp joins an obs-fold continuation line to the value and leaves its CRLF out of the
     * pieces: a value whose first piece is preceded by a line feed (and blanks), or a later
     * piece that starts right after one, is folded. Every byte fed to llhttp is in `in`,
     * contiguous, so the bytes before a piece are there to look at; the blanks before a
     * value are looked at once. */
    const char *b = at;
    if (len == 0)
        return 0; /* an empty value: llhttp reports it after the line's CRLF */
    if (k->value_pieces++ == 0) {
        while (b > hp->buf && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
    }
    if (b > hp->buf && b[-1] == '\n')
        return refuse(hp, "obsolete line folding in a header field");
    if (k->kind == HEAD_FIELD_TRANSFER_ENCODING) {
        for (size_t i = 0; i < len; i++) {
            if (k->te_len < sizeof(k->te))
                k->te[k->te_len] = (char)(at[i] | 0x20);
            k->te_len++;
        }
    }
    struct head *h = hp->head;
    if (!hp->capture || h->too_many)
        return 0;
    h->in_value = true;
    span_extend(hp, &h->values[h->n_fields], at, len);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct head_parser *hp = parser_of(p);
    struct head_check *k = &hp->check;
    if (k->kind == HEAD_FIELD_TRANSFER_ENCODING) {
        /* Only "chunked": a coding a backend might frame differently ("identity", a list)
         * could make it read another request than holdfast validated. */
        if (k->te_len > sizeof(k->te))
            return refuse(hp, "Transfer-Encoding other than chunked");
        size_t b = 0, e = k->te_len;
        while (b < e && (k->te[b] == ' ' || k->te[b] == '\t'))
            b++;
        while (e > b && (k->te[e - 1] == ' ' || k->te[e - 1] == '\t'))
            e--;
        if (e - b != 7 || memcmp(k->te + b, "chunked", 7) != 0)
            return refuse(hp, "Transfer-Encoding other than chunked");
    }
    k->kind = HEAD_FIELD_OTHER;
    /* An empty value has no on_header_value: without this, the next field's name would be
     * taken for the rest of this one's (and neither would be found by name). */
    if (hp->capture && !hp->head->too_many)
        hp->head->in_value = true;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct head_parser *hp = parser_of(p);
    struct head_check *k = &hp->check;
    /* RFC 9112 3.2: a request with several Host fields, or an HTTP/1.1 one with none, is
     * answered 400 (a backend might route by another Host than the one holdfast saw). */
    if (p->http_major == 0)
        return refuse(hp, "HTTP/0.9 is not supported");
    if (k->hosts > 1)
        return refuse(hp, "more than one Host header field");
    if (k->hosts == 0 && p->http_major == 1 && p->http_minor >= 1)
        return refuse(hp, "HTTP/1.1 request without a Host header field");
    k->in_trailers = true;
    if (!hp->capture)
        return 0;
    if (hp->head->in_value) {
        hp->head->n_fields++;
        hp->head->in_value = false;
    }
    hp->pause = HEAD_PAUSE_HEAD_DONE;
    return HPE_PAUSED;
}

static int on_message_complete(llhttp_t *p)
{
    struct head_parser *hp = parser_of(p);
    if (!hp->capture || !hp->pause_at_end)
        return 0;
    hp->pause = HEAD_PAUSE_MESSAGE_DONE;
    return HPE_PAUSED;
}

static int on_message_begin(llhttp_t *p)
{
    struct head_parser *hp = parser_of(p);
    memset(&hp->check, 0, sizeof(hp->check));
    if (hp->capture)
        memset(hp->head, 0, sizeof(*hp->head));
    return 0;
}

static llhttp_settings_t parser_settings;
static pthread_once_t parser_settings_once = PTHREAD_ONCE_INIT;

static void parser_settings_init(void)
{
    llhttp_settings_init(&parser_settings);
    parser_settings.on_message_begin = on_message_begin;
    parser_settings.on_method = on_method;
    parser_settings.on_url = on_url;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_header_field_complete = on_header_field_complete;
    parser_settings.on_header_value_complete = on_header_value_complete;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_message_complete = on_message_complete;
}

void head_parser_init(struct head_parser *hp)
{
    pthread_once(&parser_settings_once, parser_settings_init);
    memset(hp, 0, sizeof(*hp));
    llhttp_init(&hp->http, HTTP_REQUEST, &parser_settings);
    hp->http.data = hp;
}

llhttp_errno_t head_execute(struct head_parser *hp, const char *buf, const char *msg, size_t from,
                            size_t n)
{
    hp->buf = buf;
    hp->msg = msg;
    hp->pause = HEAD_PAUSE_NONE;
    return llhttp_execute(&hp->http, msg + from, n);
}

const char *head_error_reason(const struct head_parser *hp)
{
    return hp->bad_reason ? hp->bad_reason : llhttp_get_error_reason(&hp->http);
}

/* ---- reading a captured head ---- */

const char *head_ptr(const char *msg, struct head_span s)
{
    return msg + s.off;
}

bool head_span_eq(const char *msg, struct head_span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(head_ptr(msg, s), lit, n) == 0;
}

size_t head_find(const struct head *h, const char *msg, const char *name, struct head_span *value)
{
    size_t found = 0;
    for (size_t i = 0; i < h->n_fields; i++) {
        if (head_span_eq(msg, h->names[i], name)) {
            found++;
            *value = h->values[i];
        }
    }
    return found;
}

const struct route_service *head_route_by_host(const struct head *h, const char *msg,
                                               const struct route_snapshot *snap, size_t *port,
                                               char *hostbuf, size_t host_size)
{
    const char *host = NULL;
    size_t host_len = 0;
    for (size_t i = 0; i < h->n_fields; i++) {
        if (head_span_eq(msg, h->names[i], "host")) {
            host = head_ptr(msg, h->values[i]);
            host_len = h->values[i].len;
            break;
        }
    }
    if (host_size)
        hostbuf[0] = '\0';
    if (host && host_size) {
        size_t n = host_len < host_size - 1 ? host_len : host_size - 1;
        memcpy(hostbuf, host, n);
        hostbuf[n] = '\0';
    }
    if (!host)
        return NULL;
    const struct route_service *r = NULL;
    size_t len = host_len;
    const char *colon = memchr(host, ':', len);
    if (colon)
        len = (size_t)(colon - host);
    const char *dot = memchr(host, '.', len);
    if (dot) {
        const char *name = host;
        size_t name_len = (size_t)(dot - host);
        const char *ns = dot + 1;
        size_t rest = len - name_len - 1;
        const char *dot2 = memchr(ns, '.', rest);
        size_t ns_len = dot2 ? (size_t)(dot2 - ns) : rest;
        const char *suffix = dot2 ? dot2 : ns + ns_len;
        size_t suffix_len = (size_t)(host + len - suffix);
        bool suffix_ok = suffix_len == 0 || (suffix_len == 4 && !strncasecmp(suffix, ".svc", 4)) ||
                         (suffix_len == 18 && !strncasecmp(suffix, ".svc.cluster.local", 18));
        if (suffix_ok)
            r = route_snapshot_find(snap, ns, ns_len, name, name_len);
    }
    if (!r)
        return NULL;
    /* ":port" picks the service port with that number; without it, the first port. */
    *port = 0;
    if (colon) {
        unsigned number = 0;
        for (const char *d = colon + 1; d < host + host_len && *d >= '0' && *d <= '9'; d++)
            number = number * 10 + (unsigned)(*d - '0');
        for (size_t i = 0; i < r->n_ports; i++) {
            if (r->ports[i].number == number)
                *port = i;
        }
    }
    return r;
}

/* The next element of a comma- (or semicolon-) separated list in v[*pos, n), without the OWS
 * around it: its start and length; *pos moves past the separator. */
static size_t list_next(const char *v, size_t n, size_t *pos, char sep, size_t *start)
{
    size_t i = *pos;
    while (i < n && (v[i] == ' ' || v[i] == '\t'))
        i++;
    *start = i;
    while (i < n && v[i] != sep)
        i++;
    size_t e = i;
    while (e > *start && (v[e - 1] == ' ' || v[e - 1] == '\t'))
        e--;
    *pos = i + 1;
    return e - *start;
}

/* A weight that is zero ("0", "0.", "0.000"): the media range is not acceptable. */
static bool q_is_zero(const char *v, size_t n)
{
    if (n == 0 || v[0] != '0')
        return false;
    for (size_t i = 1; i < n; i++) {
        if (!(v[i] == '0' || (i == 1 && v[i] == '.')))
            return false;
    }
    return true;
}

/* One Accept value (RFC 9110 12.5.1: media ranges with parameters, comma-separated) lists
 * text/html with a weight above zero. */
static bool accept_lists_html(const char *v, size_t n)
{
    for (size_t pos = 0; pos < n;) {
        size_t start;
        size_t len = list_next(v, n, &pos, ',', &start);
        const char *elem = v + start;
        size_t ppos = 0, pstart;
        size_t range_len = list_next(elem, len, &ppos, ';', &pstart);
        bool html = range_len == 9 && strncasecmp(elem + pstart, "text/html", 9) == 0;
        while (html && ppos < len) {
            size_t plen = list_next(elem, len, &ppos, ';', &pstart);
            const char *param = elem + pstart;
            if (plen >= 2 && (param[0] | 0x20) == 'q' && param[1] == '=' &&
                q_is_zero(param + 2, plen - 2))
                html = false;
        }
        if (html)
            return true;
    }
    return false;
}

bool head_is_navigation(const struct head *h, const char *msg)
{
    if (!head_span_eq(msg, h->method, "GET") && !head_span_eq(msg, h->method, "HEAD"))
        return false;
    bool html = false;
    for (size_t i = 0; i < h->n_fields; i++) {
        if (head_span_eq(msg, h->names[i], "upgrade"))
            return false;
        if (head_span_eq(msg, h->names[i], "accept") &&
            accept_lists_html(head_ptr(msg, h->values[i]), h->values[i].len))
            html = true;
    }
    return html;
}

void head_probe_request(const struct head *h, const char *msg, struct probe_header *hdrs,
                        struct probe_request *req)
{
    for (size_t i = 0; i < h->n_fields; i++) {
        hdrs[i].name = head_ptr(msg, h->names[i]);
        hdrs[i].name_len = h->names[i].len;
        hdrs[i].value = head_ptr(msg, h->values[i]);
        hdrs[i].value_len = h->values[i].len;
    }
    req->method = head_ptr(msg, h->method);
    req->method_len = h->method.len;
    req->target = head_ptr(msg, h->url);
    req->target_len = h->url.len;
    req->headers = hdrs;
    req->n_headers = h->n_fields;
}

/* ---- first bytes ---- */

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

bool head_sniff_raw(const char *p, size_t n)
{
    if (n == 0)
        return false;
    if ((unsigned char)p[0] == 0x16)
        return true;
    size_t m = n < sizeof(h2_preface) - 1 ? n : sizeof(h2_preface) - 1;
    return memcmp(p, h2_preface, m) == 0 && m == sizeof(h2_preface) - 1;
}

bool head_maybe_h2_preface(const char *p, size_t n)
{
    return n < sizeof(h2_preface) - 1 && memcmp(p, h2_preface, n) == 0;
}

bool head_has_probe_field(const char *p, size_t n)
{
    static const char field[] = "holdfast-probe:";
    const size_t flen = sizeof(field) - 1;
    const char *end = p + (n < HEAD_PROBE_SCAN_MAX ? n : HEAD_PROBE_SCAN_MAX);
    const char *nl = memchr(p, '\n', (size_t)(end - p)); /* past the request line */
    while (nl) {
        const char *line = nl + 1;
        size_t left = (size_t)(end - line);
        if (left == 0 || line[0] == '\r' || line[0] == '\n')
            return false; /* the end of the head: the field is not in it */
        if ((line[0] | 0x20) == 'h' && left >= flen && strncasecmp(line, field, flen) == 0)
            return true;
        nl = memchr(line, '\n', left);
    }
    return false;
}
