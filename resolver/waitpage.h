/*
 * waitpage: the waiting page a browser gets while its service has no ready backend (holdfast
 * addition, opt-in per service: `waitingPage`).
 *
 * A browser navigation (head.h: head_is_navigation) to a service at zero is answered at once
 * with this page (503, Retry-After, Refresh, Cache-Control: no-store) instead of a blank tab
 * that spins until the hold timeout; the wake is requested all the same, so the service starts
 * and the page's own refresh lands on it. Every other request is held as without the page.
 *
 * Three steps, each once where it belongs:
 *   - the setting is parsed from JSON (waiting_page_parse, dataplane.h) by a control plane,
 *     once per spec or configuration;
 *   - the page is rendered, headers and body, once per route build (waitpage_new, through
 *     route_service_set_waiting_page);
 *   - each answer is the rendered page plus "Connection: close" when the connection ends, and
 *     without its body for HEAD (waitpage_answer).
 */
#ifndef HOLDFAST_WAITPAGE_H
#define HOLDFAST_WAITPAGE_H

/* A waiting page signals a wake at most this often per service (conn.c's page_wake). */
#define WAITPAGE_WAKE_EVERY_MS 1000

#include <stdbool.h>
#include <stddef.h>

/* A rendered waiting page. Immutable; owned by the route that carries it. */
struct waitpage {
    char *head; /* status line and header fields, without the closing empty line; owned */
    size_t head_len;
    char *body; /* the page; owned */
    size_t body_len;
    unsigned retry_after_s; /* Retry-After and Refresh */
};

/*
 * Renders a page: `html[0, html_len)` as given (copied), or when html is NULL the built-in
 * page, which names the service (ns, name: HTML-escaped) and refreshes itself every
 * retry_after_s seconds. Returns the page (waitpage_free), or NULL when out of memory.
 */
struct waitpage *waitpage_new(const char *ns, const char *name, const char *html, size_t html_len,
                              unsigned retry_after_s);
void waitpage_free(struct waitpage *p); /* NULL is fine */

/*
 * The answer to one request: the page's head, "Connection: close" when `close`, and the body
 * unless `head_request` (Content-Length stays the body's). Returns a malloc'd message and its
 * length in *len (caller frees), or NULL when out of memory.
 */
char *waitpage_answer(const struct waitpage *p, bool head_request, bool close, size_t *len);

#endif
