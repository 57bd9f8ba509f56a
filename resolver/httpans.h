/*
 * httpans: the HTTP answers holdfast gives itself (probe responses and errors), as complete
 * HTTP/1.1 messages. Error bodies are JSON {"error","service","reason"} built with cJSON, so
 * nothing from the request is ever echoed unescaped.
 */
#ifndef HOLDFAST_HTTPANS_H
#define HOLDFAST_HTTPANS_H

#include <stdbool.h>
#include <stddef.h>

/* Reason phrase of a status code ("Service Unavailable"). */
const char *httpans_reason_phrase(int status);

/*
 * Builds a probe answer: status, Content-Type application/json; charset=utf-8, Content-Length,
 * and the body unless `head_request`. `close` adds "Connection: close". Returns a malloc'd
 * message and its length in *len (caller frees), or NULL when out of memory.
 */
char *httpans_probe(int status, const char *body, size_t body_len, bool head_request, bool close,
                    size_t *len);

/*
 * Builds the answer to a data-path probe (common/pathprobe_nonce.h): 204, the nonce echoed in
 * a Holdfast-Probe field, "Connection: close". nonce[0, nonce_len) must be valid
 * (pathprobe_nonce_valid): it is written as is. Caller frees; NULL when out of memory.
 */
char *httpans_datapath_probe(const char *nonce, size_t nonce_len, size_t *len);

/*
 * Builds an error answer with a JSON body {"error": error, "service": service, "reason":
 * reason} (service and reason omitted when NULL; `extra` adds more string fields, as pairs
 * terminated by NULL, e.g. "host", host, NULL). Always "Connection: close". 503 answers carry
 * "Retry-After: retry_after_s". Caller frees; NULL when out of memory.
 */
char *httpans_error(int status, const char *error, const char *service, const char *reason,
                    unsigned retry_after_s, size_t *len, ...);

#endif
