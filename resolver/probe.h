/*
 * probe: probeResponse rules, the synthetic answers the resolver gives while a service is at
 * zero (load-balancer health checks) without waking it.
 *
 * Rules are written exactly as ElastiService `spec.probeResponse` (KubeElasti v0.1.30) and
 * match with the same results: rules in order, first match wins; all conditions of a rule are
 * ANDed; `method` exact and case-insensitive, any when omitted; `path` compared on the
 * percent-decoded path without the query (Exact, PathPrefix segment-wise, RegularExpression
 * as an unanchored search; omitted path = PathPrefix "/"); header names case-insensitive, a
 * header condition holds if any value of that header matches; query parameters decoded;
 * omitted status = 200.
 *
 * "The same results" includes what Go's net/http does to a request before KubeElasti sees it:
 * a target with a malformed percent-escape matches no rule (Go answers 400), "*" has the path
 * "*", query pairs are read as url.ParseQuery reads them, header values are trimmed of spaces
 * and tabs, and conditions on Host or Transfer-Encoding never hold (Go removes those headers).
 * docs/probe-response.md is the user-facing description.
 *
 * Regular expressions are compiled (with JIT) once, in probe_rules_parse, and matched under
 * PCRE2 match and depth limits: a catastrophic pattern against a hostile value counts as no
 * match, and is logged once per rule, instead of stalling a worker.
 *
 * A parsed rule set is immutable and may be shared by any number of threads.
 */
#ifndef HOLDFAST_PROBE_H
#define HOLDFAST_PROBE_H

#include <stddef.h>
#include <cjson/cJSON.h>

struct probe_rules; /* opaque, immutable once parsed */

/* One request header as received. Pointers borrow the caller's buffer. */
struct probe_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/*
 * The request being matched. All pointers borrow the caller's buffers (not NUL-terminated).
 * PCRE2's JIT may read a few bytes past the end of a header value (never past its page): the
 * result does not depend on them, but valgrind may flag them if they were never written.
 */
struct probe_request {
    const char *method; /* "GET" */
    size_t method_len;
    const char *target; /* request-target as received: "/a%20b/c?x=1&y=%2F" */
    size_t target_len;
    const struct probe_header *headers; /* in arrival order; a name may repeat */
    size_t n_headers;
};

/* The answer of a rule. Owned by the rule set; valid as long as it is. */
struct probe_response {
    int status;       /* HTTP status, 200 when the rule omitted it */
    const char *body; /* response body, "" when omitted */
    size_t body_len;
};

/*
 * Parses a JSON array of rules. `path` is the JSON path of that array for error messages,
 * e.g. "services[1].probeResponse". NULL or a JSON null `array` gives an empty rule set.
 * On error returns NULL and writes one message naming the exact JSON path and what is wrong,
 * e.g. "services[1].probeResponse[0].path.type: must be one of Exact, PathPrefix,
 * RegularExpression", or for a regular expression that does not compile, the PCRE2 message
 * and offset. Unknown keys are rejected. The caller owns the result: probe_rules_free().
 */
struct probe_rules *probe_rules_parse(const cJSON *array, const char *path, char *err,
                                      size_t errlen);

/* Number of rules in the set. */
size_t probe_rules_count(const struct probe_rules *rules);

/*
 * Returns the response of the first rule that matches `req`, or NULL when none does (or
 * `rules` is NULL). Thread-safe; allocates nothing on the common path.
 */
const struct probe_response *probe_match(const struct probe_rules *rules,
                                         const struct probe_request *req);

/* Frees a rule set; NULL is fine. */
void probe_rules_free(struct probe_rules *rules);

#endif
