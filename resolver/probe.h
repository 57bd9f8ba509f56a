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
 * Regular expressions are compiled (with JIT) once, in probe_rules_parse. Matching one request
 * does at most PROBE_WORK_BUDGET units of work, whatever the rules and the request: every
 * condition of every rule draws on that one budget, and PCRE2's per-attempt limits (match,
 * depth, JIT stack) still apply. A condition that the budget or a limit stops counts as not
 * holding, the first time per rule with a log line, so a catastrophic pattern against a
 * hostile value holds the request (as any other that matches no rule) instead of stalling a
 * worker.
 *
 * A parsed rule set is immutable and may be shared by any number of threads.
 */
#ifndef HOLDFAST_PROBE_H
#define HOLDFAST_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>

struct probe_rules; /* opaque, immutable once parsed */

/*
 * The matching work one request may do, in units. A unit is one step of a regular expression
 * (PCRE2 enters a pattern item: auto callouts count them), one subject byte a step moves over
 * or may compare (a counted repeat such as a{500}, a backreference), one byte of a subject
 * handed to PCRE2 (its scans before and between attempts), PROBE_REGEX_CALL_COST per call,
 * and one per header, per byte of an exact value compared and per byte of a query pair decoded.
 * Measured on x86-64, spending the whole budget takes under 1 ms of one core with PCRE2's JIT
 * (0.1 to 0.8 ms), 1 to 2 ms in its interpreter (docs/probe-response.md has the cases).
 */
#define PROBE_WORK_BUDGET 100000
#define PROBE_REGEX_CALL_COST 16

/* What matching one request cost, reported by probe_match when asked. */
struct probe_work {
    size_t used;  /* units of PROBE_WORK_BUDGET spent */
    bool gave_up; /* a condition was stopped by the budget or a PCRE2 limit: counted as
                     not holding */
};

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
    struct probe_work *work; /* out, optional: filled by probe_match when not NULL */
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
 * and offset. Unknown keys are rejected. A string that held a NUL character (marked by
 * json_parse, common/json.h) is refused with its path rather than read cut short. The caller
 * owns the result: probe_rules_free().
 */
struct probe_rules *probe_rules_parse(const cJSON *array, const char *path, char *err,
                                      size_t errlen);

/* Number of rules in the set. */
size_t probe_rules_count(const struct probe_rules *rules);

/*
 * Returns the response of the first rule that matches `req`, or NULL when none does (or
 * `rules` is NULL). Within PROBE_WORK_BUDGET: once it is spent, every regular expression and
 * every header or query parameter condition still to be tried counts as not holding (method
 * and Exact or PathPrefix path tests cost nothing and still apply). Fills req->work when set.
 * Thread-safe; allocates nothing on the common path.
 */
const struct probe_response *probe_match(const struct probe_rules *rules,
                                         const struct probe_request *req);

/* Frees a rule set; NULL is fine. */
void probe_rules_free(struct probe_rules *rules);

#endif
