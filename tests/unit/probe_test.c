/*
 * probe_test: probeResponse rules parse with the CRD's constraints and match requests with
 * the same results as KubeElasti v0.1.30's resolver.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "resolver/probe.h"

#define MAX_TEST_HEADERS 8

static struct probe_rules *rules_from(const char *json)
{
    cJSON *array = cJSON_Parse(json);
    cr_assert_not_null(array, "test JSON does not parse: %s", json);
    char err[512] = "";
    struct probe_rules *rules = probe_rules_parse(array, "probeResponse", err, sizeof(err));
    cJSON_Delete(array);
    cr_assert_not_null(rules, "rules rejected: %s", err);
    return rules;
}

/* The message probe_rules_parse gives for `json`, which must be rejected. */
static const char *parse_error(const char *json)
{
    static char err[512];
    cJSON *array = cJSON_Parse(json);
    cr_assert_not_null(array, "test JSON does not parse: %s", json);
    err[0] = '\0';
    struct probe_rules *rules = probe_rules_parse(array, "probeResponse", err, sizeof(err));
    cJSON_Delete(array);
    cr_assert_null(rules, "rules accepted: %s", json);
    probe_rules_free(rules);
    return err;
}

/*
 * Matches a request given as method, target and "Name: value" header lines (NULL-ended, or
 * NULL for none). Returns the matching rule's response or NULL.
 */
static const struct probe_response *match_work(const struct probe_rules *rules, const char *method,
                                               const char *target, const char *const *lines,
                                               struct probe_work *work)
{
    struct probe_header headers[MAX_TEST_HEADERS];
    size_t n = 0;
    for (; lines && lines[n]; n++) {
        cr_assert_lt(n, MAX_TEST_HEADERS);
        const char *colon = strchr(lines[n], ':');
        cr_assert_not_null(colon);
        headers[n] = (struct probe_header){
            .name = lines[n],
            .name_len = (size_t)(colon - lines[n]),
            .value = colon + 1,
            .value_len = strlen(colon + 1),
        };
    }
    struct probe_request req = {
        .method = method,
        .method_len = strlen(method),
        .target = target,
        .target_len = strlen(target),
        .headers = headers,
        .n_headers = n,
        .work = work,
    };
    return probe_match(rules, &req);
}

static const struct probe_response *match(const struct probe_rules *rules, const char *method,
                                          const char *target, const char *const *lines)
{
    return match_work(rules, method, target, lines, NULL);
}

/* The body of the rule that matches, or NULL: rules in these tests have distinct bodies. */
static const char *body_of(const struct probe_rules *rules, const char *method, const char *target,
                           const char *const *lines)
{
    const struct probe_response *r = match(rules, method, target, lines);
    return r ? r->body : NULL;
}

#define HEADERS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* ---- defaults ---------------------------------------------------------------------------- */

Test(probe_match, omitted_path_is_prefix_slash_and_omitted_status_is_200)
{
    struct probe_rules *rules = rules_from("[{\"response\": {\"body\": \"pong\"}}]");
    const struct probe_response *r = match(rules, "GET", "/any/thing?x=1", NULL);
    cr_assert_not_null(r);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->body, "pong");
    cr_assert_eq(r->body_len, 4);
    cr_assert_not_null(match(rules, "GET", "/", NULL));
    /* Go's URL.Path for "OPTIONS *" is "*", which does not start with "/". */
    cr_assert_null(match(rules, "OPTIONS", "*", NULL));
    probe_rules_free(rules);
}

Test(probe_match, omitted_body_is_empty_and_status_is_returned)
{
    struct probe_rules *rules = rules_from("[{\"response\": {\"status\": 204}}]");
    const struct probe_response *r = match(rules, "GET", "/x", NULL);
    cr_assert_not_null(r);
    cr_assert_eq(r->status, 204);
    cr_assert_str_eq(r->body, "");
    cr_assert_eq(r->body_len, 0);
    probe_rules_free(rules);
}

Test(probe_match, empty_path_object_and_empty_prefix_value_are_prefix_slash)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {}, \"response\": {\"body\": \"a\"}},"
                   " {\"path\": {\"type\": \"PathPrefix\", \"value\": \"\"},"
                   "  \"response\": {\"body\": \"b\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/deep/path", NULL), "a");
    probe_rules_free(rules);
    rules = rules_from("[{\"path\": {\"type\": \"PathPrefix\", \"value\": \"\"},"
                       " \"response\": {\"body\": \"b\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/deep/path", NULL), "b");
    probe_rules_free(rules);
}

Test(probe_match, no_rules_or_null_rules_match_nothing)
{
    cr_assert_null(match(NULL, "GET", "/", NULL));
    char err[64];
    struct probe_rules *rules = probe_rules_parse(NULL, "probeResponse", err, sizeof(err));
    cr_assert_not_null(rules);
    cr_assert_eq(probe_rules_count(rules), 0);
    cr_assert_null(match(rules, "GET", "/", NULL));
    probe_rules_free(rules);

    cJSON *null = cJSON_CreateNull();
    rules = probe_rules_parse(null, "probeResponse", err, sizeof(err));
    cJSON_Delete(null);
    cr_assert_not_null(rules);
    cr_assert_eq(probe_rules_count(rules), 0);
    probe_rules_free(rules);

    rules = rules_from("[]");
    cr_assert_eq(probe_rules_count(rules), 0);
    cr_assert_null(match(rules, "GET", "/", NULL));
    probe_rules_free(rules);
}

/* ---- method ------------------------------------------------------------------------------ */

Test(probe_match, method_is_case_insensitive_and_any_when_omitted)
{
    struct probe_rules *rules =
        rules_from("[{\"method\": \"HEAD\", \"response\": {\"body\": \"head\"}},"
                   " {\"response\": {\"body\": \"any\"}}]");
    cr_assert_str_eq(body_of(rules, "HEAD", "/", NULL), "head");
    cr_assert_str_eq(body_of(rules, "head", "/", NULL), "head");
    cr_assert_str_eq(body_of(rules, "HeAd", "/", NULL), "head");
    cr_assert_str_eq(body_of(rules, "GET", "/", NULL), "any");
    cr_assert_str_eq(body_of(rules, "HEADX", "/", NULL), "any");
    cr_assert_str_eq(body_of(rules, "DELETE", "/", NULL), "any");
    cr_assert_eq(probe_rules_count(rules), 2);
    probe_rules_free(rules);
}

/* ---- path -------------------------------------------------------------------------------- */

Test(probe_match, exact_path)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"Exact\", \"value\": \"/ready\"},"
                   "  \"response\": {\"body\": \"r\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/ready", NULL), "r");
    cr_assert_null(body_of(rules, "GET", "/ready/", NULL));
    cr_assert_null(body_of(rules, "GET", "/readyz", NULL));
    cr_assert_null(body_of(rules, "GET", "/Ready", NULL));
    cr_assert_null(body_of(rules, "GET", "/rea", NULL));
    probe_rules_free(rules);
}

Test(probe_match, prefix_is_segment_wise)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"PathPrefix\", \"value\": \"/health\"},"
                   "  \"response\": {\"body\": \"h\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/health", NULL), "h");
    cr_assert_str_eq(body_of(rules, "GET", "/health/", NULL), "h");
    cr_assert_str_eq(body_of(rules, "GET", "/health/live/x", NULL), "h");
    cr_assert_null(body_of(rules, "GET", "/healthz", NULL));
    cr_assert_null(body_of(rules, "GET", "/healt", NULL));
    cr_assert_null(body_of(rules, "GET", "/x/health", NULL));
    probe_rules_free(rules);
}

Test(probe_match, prefix_without_type_is_path_prefix)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"value\": \"/health\"}, \"response\": {\"body\": \"h\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/health/x", NULL), "h");
    cr_assert_null(body_of(rules, "GET", "/healthz", NULL));
    probe_rules_free(rules);
}

Test(probe_match, prefix_ending_in_slash_matches_anything_under_it)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"PathPrefix\", \"value\": \"/api/\"},"
                   "  \"response\": {\"body\": \"a\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/api/", NULL), "a");
    cr_assert_str_eq(body_of(rules, "GET", "/api/v1", NULL), "a");
    cr_assert_str_eq(body_of(rules, "GET", "/api//x", NULL), "a");
    cr_assert_null(body_of(rules, "GET", "/api", NULL));
    cr_assert_null(body_of(rules, "GET", "/apix", NULL));
    probe_rules_free(rules);
}

Test(probe_match, path_is_percent_decoded_and_plus_is_literal)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"Exact\", \"value\": \"/a b/c\"},"
                   "  \"response\": {\"body\": \"space\"}},"
                   " {\"path\": {\"type\": \"Exact\", \"value\": \"/x/y\"},"
                   "  \"response\": {\"body\": \"slash\"}},"
                   " {\"path\": {\"type\": \"Exact\", \"value\": \"/p+q\"},"
                   "  \"response\": {\"body\": \"plus\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/a%20b/c", NULL), "space");
    cr_assert_str_eq(body_of(rules, "GET", "/a%20b%2fc", NULL), "space");
    cr_assert_str_eq(body_of(rules, "GET", "/x%2Fy", NULL), "slash");
    cr_assert_str_eq(body_of(rules, "GET", "/p+q", NULL), "plus");
    cr_assert_null(body_of(rules, "GET", "/a+b/c", NULL));
    cr_assert_null(body_of(rules, "GET", "/p%20q", NULL));
    probe_rules_free(rules);
}

Test(probe_match, invalid_percent_encoding_matches_nothing)
{
    /* Go's server answers 400 to these before KubeElasti's matching runs. */
    struct probe_rules *rules = rules_from("[{\"response\": {\"body\": \"any\"}}]");
    cr_assert_null(body_of(rules, "GET", "/ready%zz", NULL));
    cr_assert_null(body_of(rules, "GET", "/ready%4", NULL));
    cr_assert_null(body_of(rules, "GET", "/ready%", NULL));
    cr_assert_null(body_of(rules, "GET", "ready", NULL));
    cr_assert_null(body_of(rules, "GET", "", NULL));
    cr_assert_str_eq(body_of(rules, "GET", "/ready%41", NULL), "any");
    probe_rules_free(rules);
}

Test(probe_match, query_is_not_part_of_the_path)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"Exact\", \"value\": \"/ready\"},"
                   "  \"response\": {\"body\": \"r\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/ready?x=1", NULL), "r");
    cr_assert_str_eq(body_of(rules, "GET", "/ready?", NULL), "r");
    cr_assert_str_eq(body_of(rules, "GET", "/ready?a=/b?c", NULL), "r");
    /* An encoded '?' is part of the path. */
    cr_assert_null(body_of(rules, "GET", "/ready%3Fx=1", NULL));
    probe_rules_free(rules);
}

Test(probe_match, absolute_form_target_uses_the_path_after_the_authority)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"Exact\", \"value\": \"/ready\"},"
                   "  \"response\": {\"body\": \"r\"}},"
                   " {\"response\": {\"body\": \"slash\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "http://example.com/ready?x=1", NULL), "r");
    cr_assert_str_eq(body_of(rules, "GET", "HTTP://example.com:80/ready", NULL), "r");
    /* No path after the authority: Go's URL.Path is "", which no prefix "/" matches. */
    cr_assert_null(body_of(rules, "GET", "http://example.com", NULL));
    cr_assert_null(body_of(rules, "GET", "http://example.com?x=1", NULL));
    probe_rules_free(rules);
}

Test(probe_match, path_regex_is_an_unanchored_search_on_the_decoded_path)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"RegularExpression\", \"value\": \"ready\"},"
                   "  \"response\": {\"body\": \"loose\"}},"
                   " {\"path\": {\"type\": \"RegularExpression\", \"value\": \"^/a b$\"},"
                   "  \"response\": {\"body\": \"anchored\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/x/ready/y", NULL), "loose");
    cr_assert_str_eq(body_of(rules, "GET", "/notready?q", NULL), "loose");
    cr_assert_str_eq(body_of(rules, "GET", "/a%20b", NULL), "anchored");
    cr_assert_null(body_of(rules, "GET", "/a%20b/c", NULL));
    cr_assert_null(body_of(rules, "GET", "/x?ready=1", NULL));
    probe_rules_free(rules);
}

Test(probe_match, regex_dollar_matches_only_at_the_end_as_in_go)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"RegularExpression\", \"value\": \"^/ready$\"},"
                   "  \"response\": {\"body\": \"r\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/ready", NULL), "r");
    /* PCRE2's default `$` would also match before a final newline; RE2's does not. */
    cr_assert_null(body_of(rules, "GET", "/ready%0A", NULL));
    probe_rules_free(rules);
}

Test(probe_match, empty_regex_matches_every_path)
{
    struct probe_rules *rules = rules_from(
        "[{\"path\": {\"type\": \"RegularExpression\"}, \"response\": {\"body\": \"e\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/anything", NULL), "e");
    probe_rules_free(rules);
}

Test(probe_match, long_target_beyond_the_stack_scratch)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"RegularExpression\", \"value\": \"z$\"},"
                   "  \"queryParams\": [{\"name\": \"k\", \"value\": \"v\"}],"
                   "  \"response\": {\"body\": \"long\"}}]");
    size_t n = 20000;
    char *target = malloc(n + 16);
    target[0] = '/';
    memset(target + 1, 'y', n);
    strcpy(target + 1 + n, "z?a=1&k=v");
    cr_assert_str_eq(body_of(rules, "GET", target, NULL), "long");
    target[n + 1] = 'q'; /* "/yyy...q?a=1&k=v" */
    cr_assert_null(body_of(rules, "GET", target, NULL));
    free(target);
    probe_rules_free(rules);
}

/* ---- headers ----------------------------------------------------------------------------- */

Test(probe_match, header_name_is_case_insensitive)
{
    struct probe_rules *rules =
        rules_from("[{\"headers\": [{\"name\": \"X-Health-Check\", \"value\": \"1\"}],"
                   "  \"response\": {\"body\": \"h\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("x-health-check: 1")), "h");
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("X-HEALTH-CHECK:1")), "h");
    cr_assert_null(body_of(rules, "GET", "/", HEADERS("X-Health-Checks: 1")));
    cr_assert_null(body_of(rules, "GET", "/", NULL));
    probe_rules_free(rules);
}

Test(probe_match, header_exact_value_is_case_sensitive_and_trimmed)
{
    struct probe_rules *rules = rules_from(
        "[{\"headers\": [{\"name\": \"X-Check\", \"value\": \"Yes\", \"type\": \"Exact\"}],"
        "  \"response\": {\"body\": \"h\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("X-Check: Yes")), "h");
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("X-Check: \t Yes \t")), "h");
    cr_assert_null(body_of(rules, "GET", "/", HEADERS("X-Check: yes")));
    cr_assert_null(body_of(rules, "GET", "/", HEADERS("X-Check: Yes, No")));
    probe_rules_free(rules);
}

Test(probe_match, repeated_header_matches_when_any_value_does)
{
    struct probe_rules *rules =
        rules_from("[{\"headers\": [{\"name\": \"X-Tag\", \"value\": \"b\"}],"
                   "  \"response\": {\"body\": \"exact\"}},"
                   " {\"headers\": [{\"name\": \"X-Re\", \"value\": \"^d$\", "
                   "   \"type\": \"RegularExpression\"}],"
                   "  \"response\": {\"body\": \"regex\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("X-Tag: a", "Other: b", "x-tag: b")),
                     "exact");
    cr_assert_null(body_of(rules, "GET", "/", HEADERS("X-Tag: a", "X-Tag: c")));
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("X-Re: c", "X-Re: d")), "regex");
    probe_rules_free(rules);
}

Test(probe_match, header_regex_is_an_unanchored_search)
{
    struct probe_rules *rules =
        rules_from("[{\"headers\": [{\"name\": \"User-Agent\", \"value\": \"probe/[0-9]+\","
                   "   \"type\": \"RegularExpression\"}],"
                   "  \"response\": {\"body\": \"ua\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("User-Agent: kube-probe/1.29")), "ua");
    cr_assert_null(body_of(rules, "GET", "/", HEADERS("User-Agent: kube-probe/x")));
    /* Invalid UTF-8 in a request value is matched, not an error. */
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("User-Agent: \xff\xfe probe/7")), "ua");
    probe_rules_free(rules);
}

Test(probe_match, host_and_transfer_encoding_conditions_never_match_as_in_go)
{
    /* Go's server takes Host and Transfer-Encoding out of Request.Header. */
    struct probe_rules *rules =
        rules_from("[{\"headers\": [{\"name\": \"Host\", \"value\": \"a.example\"}],"
                   "  \"response\": {\"body\": \"host\"}},"
                   " {\"headers\": [{\"name\": \"transfer-encoding\", \"value\": \"chunked\"}],"
                   "  \"response\": {\"body\": \"te\"}},"
                   " {\"response\": {\"body\": \"fallback\"}}]");
    cr_assert_str_eq(
        body_of(rules, "GET", "/", HEADERS("Host: a.example", "Transfer-Encoding: chunked")),
        "fallback");
    probe_rules_free(rules);
}

Test(probe_match, pragma_no_cache_implies_cache_control_as_in_go)
{
    struct probe_rules *rules =
        rules_from("[{\"headers\": [{\"name\": \"Cache-Control\", \"value\": \"no-cache\"}],"
                   "  \"response\": {\"body\": \"cc\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("Pragma: no-cache")), "cc");
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("Cache-Control: no-cache")), "cc");
    cr_assert_null(body_of(rules, "GET", "/", HEADERS("Pragma: no-cache", "Cache-Control: x")));
    cr_assert_null(body_of(rules, "GET", "/", HEADERS("Pragma: no-store")));
    probe_rules_free(rules);
}

Test(probe_match, blank_names_never_match_as_in_kubeelasti)
{
    struct probe_rules *rules =
        rules_from("[{\"headers\": [{\"name\": \" \", \"value\": \"\"}],"
                   "  \"response\": {\"body\": \"h\"}},"
                   " {\"queryParams\": [{\"name\": \"\", \"value\": \"\"}],"
                   "  \"response\": {\"body\": \"q\"}},"
                   " {\"headers\": [{\"name\": \" X-Trim \", \"value\": \"1\"}],"
                   "  \"response\": {\"body\": \"trimmed\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/?=&a", HEADERS("X-Trim: 1")), "trimmed");
    cr_assert_null(body_of(rules, "GET", "/?=", NULL));
    probe_rules_free(rules);
}

/* ---- query parameters -------------------------------------------------------------------- */

Test(probe_match, query_params_are_decoded)
{
    struct probe_rules *rules =
        rules_from("[{\"queryParams\": [{\"name\": \"a b\", \"value\": \"x/y z\"}],"
                   "  \"response\": {\"body\": \"q\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/?a+b=x%2Fy+z", NULL), "q");
    cr_assert_str_eq(body_of(rules, "GET", "/?a%20b=x/y%20z", NULL), "q");
    cr_assert_null(body_of(rules, "GET", "/?a+b=x%2Fy", NULL));
    cr_assert_null(body_of(rules, "GET", "/?A+b=x%2Fy+z", NULL));
    probe_rules_free(rules);
}

Test(probe_match, repeated_query_param_matches_when_any_value_does)
{
    struct probe_rules *rules =
        rules_from("[{\"queryParams\": [{\"name\": \"k\", \"value\": \"2\"}],"
                   "  \"response\": {\"body\": \"q\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/?k=1&k=2", NULL), "q");
    cr_assert_str_eq(body_of(rules, "GET", "/?k=2&k=1", NULL), "q");
    cr_assert_null(body_of(rules, "GET", "/?k=1&k=3", NULL));
    cr_assert_null(body_of(rules, "GET", "/", NULL));
    probe_rules_free(rules);
}

Test(probe_match, query_pairs_are_read_as_go_parse_query)
{
    struct probe_rules *rules =
        rules_from("[{\"queryParams\": [{\"name\": \"flag\", \"value\": \"\"}],"
                   "  \"response\": {\"body\": \"flag\"}},"
                   " {\"queryParams\": [{\"name\": \"k\", \"value\": \"v\"}],"
                   "  \"response\": {\"body\": \"kv\"}},"
                   " {\"queryParams\": [{\"name\": \"e\", \"value\": \"a=b\"}],"
                   "  \"response\": {\"body\": \"eq\"}}]");
    /* A name alone has the value "". */
    cr_assert_str_eq(body_of(rules, "GET", "/?flag", NULL), "flag");
    cr_assert_str_eq(body_of(rules, "GET", "/?flag=", NULL), "flag");
    /* A pair containing ';' is skipped (Go >= 1.17), the others still count. */
    cr_assert_null(body_of(rules, "GET", "/?k=v;x=1", NULL));
    cr_assert_str_eq(body_of(rules, "GET", "/?x=1;y&k=v", NULL), "kv");
    /* A pair with a malformed escape is skipped. */
    cr_assert_null(body_of(rules, "GET", "/?k=%zz", NULL));
    cr_assert_null(body_of(rules, "GET", "/?k%=v", NULL));
    cr_assert_str_eq(body_of(rules, "GET", "/?k=%zz&&k=v&", NULL), "kv");
    /* The value is everything after the first '='. */
    cr_assert_str_eq(body_of(rules, "GET", "/?e=a=b", NULL), "eq");
    probe_rules_free(rules);
}

Test(probe_match, query_param_regex_is_an_unanchored_search)
{
    struct probe_rules *rules =
        rules_from("[{\"queryParams\": [{\"name\": \"probe\", \"value\": \"[0-9]{3}\","
                   "   \"type\": \"RegularExpression\"}],"
                   "  \"response\": {\"body\": \"q\"}}]");
    cr_assert_str_eq(body_of(rules, "GET", "/?probe=abc123def", NULL), "q");
    cr_assert_str_eq(body_of(rules, "GET", "/?probe=%31%32%33", NULL), "q");
    cr_assert_null(body_of(rules, "GET", "/?probe=12", NULL));
    probe_rules_free(rules);
}

/* ---- combination and order --------------------------------------------------------------- */

Test(probe_match, all_conditions_of_a_rule_are_anded)
{
    struct probe_rules *rules =
        rules_from("[{\"method\": \"GET\","
                   "  \"path\": {\"type\": \"Exact\", \"value\": \"/probe\"},"
                   "  \"headers\": [{\"name\": \"X-A\", \"value\": \"1\"},"
                   "              {\"name\": \"X-B\", \"value\": \"2\"}],"
                   "  \"queryParams\": [{\"name\": \"k\", \"value\": \"v\"},"
                   "                  {\"name\": \"m\", \"value\": \"n\"}],"
                   "  \"response\": {\"status\": 503, \"body\": \"{\\\"ok\\\":false}\"}}]");
    const char *const *both = HEADERS("X-A: 1", "X-B: 2");
    const struct probe_response *r = match(rules, "GET", "/probe?k=v&m=n", both);
    cr_assert_not_null(r);
    cr_assert_eq(r->status, 503);
    cr_assert_str_eq(r->body, "{\"ok\":false}");
    cr_assert_null(match(rules, "POST", "/probe?k=v&m=n", both));
    cr_assert_null(match(rules, "GET", "/probe/x?k=v&m=n", both));
    cr_assert_null(match(rules, "GET", "/probe?k=v&m=n", HEADERS("X-A: 1")));
    cr_assert_null(match(rules, "GET", "/probe?k=v&m=n", HEADERS("X-B: 2")));
    cr_assert_null(match(rules, "GET", "/probe?k=v", both));
    cr_assert_null(match(rules, "GET", "/probe?m=n", both));
    probe_rules_free(rules);
}

Test(probe_match, first_matching_rule_wins)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"value\": \"/health\"}, \"method\": \"POST\","
                   "  \"response\": {\"body\": \"first\"}},"
                   " {\"path\": {\"value\": \"/health\"}, \"response\": {\"body\": \"second\"}},"
                   " {\"path\": {\"value\": \"/\"}, \"response\": {\"body\": \"third\"}}]");
    cr_assert_str_eq(body_of(rules, "POST", "/health", NULL), "first");
    cr_assert_str_eq(body_of(rules, "GET", "/health", NULL), "second");
    cr_assert_str_eq(body_of(rules, "POST", "/other", NULL), "third");
    probe_rules_free(rules);
}

/* ---- hostile regular expressions --------------------------------------------------------- */

static char *hostile_value(size_t n)
{
    char *v = malloc(n + 1);
    memset(v, 'a', n);
    v[n - 1] = '!';
    v[n] = '\0';
    return v;
}

static size_t count_lines_with(FILE *f, const char *needle)
{
    char line[4096];
    size_t n = 0;
    while (fgets(line, sizeof(line), f))
        n += strstr(line, needle) != NULL;
    return n;
}

Test(probe_match, catastrophic_regex_counts_as_no_match_and_is_logged_once,
     .init = cr_redirect_stderr)
{
    struct probe_rules *rules =
        rules_from("[{\"headers\": [{\"name\": \"X-Evil\", \"value\": \"(a+)+$\","
                   "   \"type\": \"RegularExpression\"}],"
                   "  \"response\": {\"body\": \"evil\"}},"
                   " {\"response\": {\"body\": \"fallback\"}}]");
    size_t n = 30 * 1024;
    char *value = hostile_value(n);
    char *line = malloc(n + 16);
    snprintf(line, n + 16, "X-Evil: %s", value);
    for (int i = 0; i < 3; i++)
        cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS(line)), "fallback");
    /* The same pattern still matches an innocent value. */
    cr_assert_str_eq(body_of(rules, "GET", "/", HEADERS("X-Evil: aaa")), "evil");
    fflush(stderr);
    cr_assert_eq(count_lines_with(cr_get_redirected_stderr(), "gave up"), 1);
    free(line);
    free(value);
    probe_rules_free(rules);
}

Test(probe_match, catastrophic_regex_on_path_and_query_counts_as_no_match)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"RegularExpression\", \"value\": \"^/(a|aa)+$\"},"
                   "  \"response\": {\"body\": \"path\"}},"
                   " {\"queryParams\": [{\"name\": \"q\", \"value\": \"^(\\\\w+\\\\s?)*$\","
                   "   \"type\": \"RegularExpression\"}],"
                   "  \"response\": {\"body\": \"query\"}}]");
    size_t n = 30 * 1024;
    char *value = hostile_value(n);
    char *target = malloc(2 * n + 16);
    snprintf(target, 2 * n + 16, "/%s?q=%s", value, value);
    cr_assert_null(body_of(rules, "GET", target, NULL));
    cr_assert_str_eq(body_of(rules, "GET", "/aaa", NULL), "path");
    cr_assert_str_eq(body_of(rules, "GET", "/x?q=abc+def", NULL), "query");
    free(target);
    free(value);
    probe_rules_free(rules);
}

/* ---- the work budget of one request ---------------------------------------------------- */

/* `unit` repeated n times between `head` and `tail`. The caller frees it. */
static char *repeated(const char *head, const char *unit, size_t n, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(hl + n * ul + tl + 1);
    cr_assert_not_null(s);
    memcpy(s, head, hl);
    for (size_t i = 0; i < n; i++)
        memcpy(s + hl + i * ul, unit, ul);
    memcpy(s + hl + n * ul, tail, tl + 1);
    return s;
}

/* Rules: `first` repeated n times, then `last`. The caller frees the result. */
static struct probe_rules *rules_repeated(const char *first, size_t n, const char *last)
{
    char *json = repeated("[", first, n, last);
    struct probe_rules *rules = rules_from(json);
    free(json);
    return rules;
}

/*
 * Issue 9: an unanchored search that cannot match tries every start position, and for this
 * pattern each try is linear: the cost grew with the square of the path (1 ms at 500 "a%20",
 * about 250 ms at 8,000), each try well within PCRE2's per-try match limit.
 */
Test(probe_work, issue9_search_over_a_long_path_stops_within_the_budget)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"Exact\", \"value\": \"/ping\"},"
                   "  \"response\": {\"body\": \"ping\"}},"
                   " {\"path\": {\"type\": \"RegularExpression\", \"value\": \"(\\\\w+\\\\s?)+$\"},"
                   "  \"response\": {\"body\": \"words\"}}]");
    struct probe_work work;
    char *hostile = repeated("/", "a%20", 8000, "!");
    cr_assert_null(match_work(rules, "GET", hostile, NULL, &work));
    cr_assert(work.gave_up);
    cr_assert_leq(work.used, PROBE_WORK_BUDGET);

    /* The same pattern, on the same long path that it does match: found at once. */
    char *words = repeated("/", "a%20", 8000, "");
    const struct probe_response *r = match_work(rules, "GET", words, NULL, &work);
    cr_assert(r && strcmp(r->body, "words") == 0);
    cr_assert_not(work.gave_up);
    r = match_work(rules, "GET", "/ping", NULL, &work);
    cr_assert(r && strcmp(r->body, "ping") == 0);
    cr_assert_not(work.gave_up);
    free(words);
    free(hostile);
    probe_rules_free(rules);
}

Test(probe_work, one_budget_for_all_rules_of_a_request_then_free_tests_still_apply)
{
    /* 31 rules that each would search the whole path, then a rule on the method alone. */
    struct probe_rules *rules = rules_repeated(
        "{\"path\": {\"type\": \"RegularExpression\", \"value\": \"(\\\\w+\\\\s?)+$\"},"
        " \"response\": {\"body\": \"words\"}},",
        31, "{\"method\": \"OPTIONS\", \"response\": {\"body\": \"options\"}}]");
    struct probe_work work;
    char *hostile = repeated("/", "a%20", 8000, "!");
    cr_assert_null(match_work(rules, "GET", hostile, NULL, &work));
    cr_assert(work.gave_up);
    cr_assert_leq(work.used, PROBE_WORK_BUDGET);
    /* Once the budget is spent, a rule that needs no work still answers. */
    const struct probe_response *r = match_work(rules, "OPTIONS", hostile, NULL, &work);
    cr_assert(r && strcmp(r->body, "options") == 0);
    cr_assert(work.gave_up);
    free(hostile);
    probe_rules_free(rules);
}

Test(probe_work, query_conditions_of_every_rule_share_the_budget)
{
    /* Each condition reads all 8,000 pairs to find its value at the end: 31 rules x 16
     * conditions would read the 32 KB query about 500 times. */
    char *conds = repeated("{\"queryParams\": [", "{\"name\": \"q\", \"value\": \"b\"},", 15,
                           "{\"name\": \"q\", \"value\": \"never\"}],"
                           " \"response\": {\"body\": \"query\"}},");
    char *json = repeated("[", conds, 31,
                          "{\"path\": {\"type\": \"Exact\", \"value\": \"/x\"},"
                          " \"response\": {\"body\": \"x\"}}]");
    struct probe_rules *rules = rules_from(json);
    struct probe_work work;
    char *target = repeated("/x?", "q=a&", 8000, "q=b");
    const struct probe_response *r = match_work(rules, "GET", target, NULL, &work);
    cr_assert(r && strcmp(r->body, "x") == 0);
    cr_assert(work.gave_up);
    cr_assert_leq(work.used, PROBE_WORK_BUDGET);
    free(target);
    free(json);
    free(conds);
    probe_rules_free(rules);
}

Test(probe_work, a_counted_repeat_is_charged_for_the_bytes_it_compares)
{
    /* 2^12 ways through (x|x)*, each comparing a{2000} over 1,999 bytes before it fails: few
     * steps, 8 million byte comparisons. */
    struct probe_rules *rules = rules_from(
        "[{\"path\": {\"type\": \"RegularExpression\", \"value\": \"^/(?:x|x)*a{2000}b\"},"
        "  \"response\": {\"body\": \"repeat\"}}]");
    char *xs = repeated("/", "x", 12, "");
    char *target = repeated(xs, "a", 1999, "cb");
    struct probe_work work;
    cr_assert_null(match_work(rules, "GET", target, NULL, &work));
    cr_assert(work.gave_up);
    cr_assert_leq(work.used, PROBE_WORK_BUDGET);
    free(target);
    free(xs);
    probe_rules_free(rules);
}

Test(probe_work, a_counted_group_is_charged_by_the_steps_inside_it)
{
    /* The steps of each turn of the group are counted as they happen: its count is no weight. */
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"RegularExpression\", \"value\": \"^/(?:ab){1000}$\"},"
                   "  \"response\": {\"body\": \"group\"}}]");
    char *target = repeated("/", "ab", 1000, "");
    struct probe_work work;
    const struct probe_response *r = match_work(rules, "GET", target, NULL, &work);
    cr_assert(r && strcmp(r->body, "group") == 0);
    cr_assert_not(work.gave_up);
    free(target);
    probe_rules_free(rules);
}

Test(probe_work, a_backreference_is_charged_for_the_bytes_it_compares)
{
    /* 2^12 ways through (x|x)*, each comparing \1 over 999 bytes before it fails. */
    struct probe_rules *rules = rules_from(
        "[{\"path\": {\"type\": \"RegularExpression\", \"value\": \"^/(a{1000})(?:x|x)*\\\\1b\"},"
        "  \"response\": {\"body\": \"backref\"}}]");
    char *as = repeated("/", "a", 1000, "");
    char *xs = repeated(as, "x", 12, "");
    char *target = repeated(xs, "a", 999, "cb");
    struct probe_work work;
    cr_assert_null(match_work(rules, "GET", target, NULL, &work));
    cr_assert(work.gave_up);
    cr_assert_leq(work.used, PROBE_WORK_BUDGET);
    free(target);
    free(xs);
    free(as);
    probe_rules_free(rules);
}

Test(probe_work, health_check_patterns_match_long_values_well_within_the_budget)
{
    struct probe_rules *rules =
        rules_from("[{\"headers\": [{\"name\": \"User-Agent\", \"value\": \"Chrome/\\\\d+\","
                   "   \"type\": \"RegularExpression\"}], \"response\": {\"body\": \"chrome\"}},"
                   " {\"path\": {\"type\": \"RegularExpression\", \"value\": \"/items/[0-9]+$\"},"
                   "  \"response\": {\"body\": \"items\"}},"
                   " {\"queryParams\": [{\"name\": \"probe\", \"value\": \"^lb-[a-z]+$\","
                   "   \"type\": \"RegularExpression\"}], \"response\": {\"body\": \"query\"}}]");
    struct probe_work work;
    char *ua = repeated("User-Agent: ", "Mozilla/5.0 (X11) ", 200, "Chrome/120.0");
    const struct probe_response *r = match_work(rules, "GET", "/", HEADERS(ua), &work);
    cr_assert(r && strcmp(r->body, "chrome") == 0);
    cr_assert_not(work.gave_up);
    char *path = repeated("/", "segment/", 500, "items/42");
    r = match_work(rules, "GET", path, NULL, &work);
    cr_assert(r && strcmp(r->body, "items") == 0);
    cr_assert_not(work.gave_up);
    char *query = repeated("/x?", "other=1&", 1000, "probe=lb-check");
    r = match_work(rules, "GET", query, NULL, &work);
    cr_assert(r && strcmp(r->body, "query") == 0);
    cr_assert_not(work.gave_up);
    cr_assert_gt(work.used, 0);
    free(query);
    free(path);
    free(ua);
    probe_rules_free(rules);
}

/* ---- threads ----------------------------------------------------------------------------- */

struct thread_arg {
    const struct probe_rules *rules;
    int failures;
};

static void *match_many(void *p)
{
    struct thread_arg *arg = p;
    for (int i = 0; i < 2000; i++) {
        const char *expect = i % 2 ? "re" : "plain";
        const char *target = i % 2 ? "/v1/items/42" : "/plain";
        const struct probe_header h = {"X-N", 3, "v-17", 4};
        struct probe_request req = {"GET", 3, target, strlen(target), &h, 1, NULL};
        const struct probe_response *r = probe_match(arg->rules, &req);
        if (!r || strcmp(r->body, expect) != 0)
            arg->failures++;
    }
    return NULL;
}

Test(probe_match, threads_share_one_rule_set)
{
    struct probe_rules *rules =
        rules_from("[{\"path\": {\"type\": \"Exact\", \"value\": \"/plain\"}, \"response\": "
                   "{\"body\": \"plain\"}},"
                   " {\"path\": {\"type\": \"RegularExpression\", \"value\": \"/items/[0-9]+$\"},"
                   "  \"headers\": [{\"name\": \"x-n\", \"value\": \"^v-\\\\d+$\", \"type\": "
                   "\"RegularExpression\"}],"
                   "  \"response\": {\"body\": \"re\"}}]");
    pthread_t threads[8];
    struct thread_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i] = (struct thread_arg){rules, 0};
        cr_assert_eq(pthread_create(&threads[i], NULL, match_many, &args[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(args[i].failures, 0, "thread %d: %d wrong answers", i, args[i].failures);
    }
    probe_rules_free(rules);
}

/* ---- parse errors: one per kind, with the exact JSON path -------------------------------- */

Test(probe_parse, not_an_array)
{
    cr_assert_str_eq(parse_error("{}"), "probeResponse: must be an array");
}

Test(probe_parse, a_string_holding_a_nul_is_refused_with_its_path)
{
    /* cJSON alone hands out "^/ok" for this pattern; json_parse marks it. */
    const char *json = "[{\"response\": {}}, {\"path\": {\"type\": \"RegularExpression\", "
                       "\"value\": \"^/ok\\u0000|\"}, \"response\": {}}]";
    cJSON *array = json_parse(json, strlen(json) + 1, NULL, true);
    cr_assert_not_null(array);
    char err[512] = "";
    cr_assert_null(probe_rules_parse(array, "probeResponse", err, sizeof(err)));
    cr_assert_str_eq(err,
                     "probeResponse[1].path.value: must not contain a NUL character (\\u0000)");
    cJSON_Delete(array);
}

Test(probe_parse, too_many_rules)
{
    char json[4096] = "[";
    for (int i = 0; i < 33; i++)
        strcat(json, i ? ",{\"response\":{}}" : "{\"response\":{}}");
    strcat(json, "]");
    cr_assert_str_eq(parse_error(json), "probeResponse: must have at most 32 items");
    json[strlen(json) - strlen(",{\"response\":{}}]")] = '\0';
    strcat(json, "]");
    struct probe_rules *rules = rules_from(json);
    cr_assert_eq(probe_rules_count(rules), 32);
    probe_rules_free(rules);
}

Test(probe_parse, rule_not_an_object)
{
    cr_assert_str_eq(parse_error("[{\"response\": {}}, 3]"), "probeResponse[1]: must be an object");
}

Test(probe_parse, unknown_keys_at_every_level)
{
    cr_assert_str_eq(parse_error("[{\"response\": {}, \"paths\": {}}]"),
                     "probeResponse[0]: unknown key \"paths\" (expected path, headers, "
                     "queryParams, method, response)");
    cr_assert_str_eq(parse_error("[{\"response\": {}, \"path\": {\"prefix\": \"/\"}}]"),
                     "probeResponse[0].path: unknown key \"prefix\" (expected type, value)");
    cr_assert_str_eq(
        parse_error("[{\"response\": {}, \"headers\": [{\"name\": \"a\", \"value\": \"b\", "
                    "\"Type\": \"Exact\"}]}]"),
        "probeResponse[0].headers[0]: unknown key \"Type\" (expected name, value, type)");
    cr_assert_str_eq(parse_error("[{\"response\": {\"code\": 200}}]"),
                     "probeResponse[0].response: unknown key \"code\" (expected status, body)");
}

Test(probe_parse, duplicate_key)
{
    cr_assert_str_eq(parse_error("[{\"method\": \"GET\", \"method\": \"PUT\", \"response\": {}}]"),
                     "probeResponse[0]: key \"method\" appears twice");
}

Test(probe_parse, response_required)
{
    cr_assert_str_eq(parse_error("[{\"method\": \"GET\"}]"),
                     "probeResponse[0].response: is required");
    cr_assert_str_eq(parse_error("[{\"response\": \"ok\"}]"),
                     "probeResponse[0].response: must be an object");
}

Test(probe_parse, method_enum)
{
    cr_assert_str_eq(parse_error("[{\"method\": \"get\", \"response\": {}}]"),
                     "probeResponse[0].method: must be one of GET, HEAD, POST, PUT, DELETE, "
                     "CONNECT, OPTIONS, TRACE, PATCH");
    cr_assert_str_eq(parse_error("[{\"method\": 1, \"response\": {}}]"),
                     "probeResponse[0].method: must be a string");
}

Test(probe_parse, path_type_enum)
{
    cr_assert_str_eq(parse_error("[{\"response\": {}}, {\"path\": {\"type\": \"Prefix\"}, "
                                 "\"response\": {}}]"),
                     "probeResponse[1].path.type: must be one of Exact, PathPrefix, "
                     "RegularExpression");
    cr_assert_str_eq(parse_error("[{\"path\": {\"type\": \"\"}, \"response\": {}}]"),
                     "probeResponse[0].path.type: must be one of Exact, PathPrefix, "
                     "RegularExpression");
}

Test(probe_parse, path_types)
{
    cr_assert_str_eq(parse_error("[{\"path\": \"/x\", \"response\": {}}]"),
                     "probeResponse[0].path: must be an object");
    cr_assert_str_eq(parse_error("[{\"path\": {\"value\": 5}, \"response\": {}}]"),
                     "probeResponse[0].path.value: must be a string");
}

/* `template` with its one "%s" replaced by `n` copies of `unit`. */
static char *json_with_repeat(const char *template, const char *unit, size_t n)
{
    const char *hole = strstr(template, "%s");
    cr_assert_not_null(hole);
    size_t head = (size_t)(hole - template), ulen = strlen(unit);
    char *json = malloc(strlen(template) + ulen * n + 1);
    memcpy(json, template, head);
    for (size_t i = 0; i < n; i++)
        memcpy(json + head + i * ulen, unit, ulen);
    strcpy(json + head + ulen * n, hole + 2);
    return json;
}

Test(probe_parse, path_value_max_length_counts_characters)
{
    const char *t = "[{\"path\": {\"value\": \"%s\"}, \"response\": {}}]";
    char *json = json_with_repeat(t, "x", 1025);
    cr_assert_str_eq(parse_error(json),
                     "probeResponse[0].path.value: must be at most 1024 characters");
    free(json);
    json = json_with_repeat(t, "\xc3\xa9", 1024); /* 1024 characters, 2048 bytes */
    probe_rules_free(rules_from(json));
    free(json);
}

Test(probe_parse, header_constraints)
{
    cr_assert_str_eq(parse_error("[{\"headers\": {}, \"response\": {}}]"),
                     "probeResponse[0].headers: must be an array");
    cr_assert_str_eq(parse_error("[{\"headers\": [{\"value\": \"b\"}], \"response\": {}}]"),
                     "probeResponse[0].headers[0].name: is required");
    cr_assert_str_eq(parse_error("[{\"headers\": [{\"name\": \"a\", \"value\": \"b\"}, "
                                 "{\"name\": \"a\"}], \"response\": {}}]"),
                     "probeResponse[0].headers[1].value: is required");
    cr_assert_str_eq(parse_error("[{\"headers\": [{\"name\": \"a\", \"value\": true}], "
                                 "\"response\": {}}]"),
                     "probeResponse[0].headers[0].value: must be a string");
    cr_assert_str_eq(parse_error("[{\"headers\": [\"a\"], \"response\": {}}]"),
                     "probeResponse[0].headers[0]: must be an object");
    cr_assert_str_eq(parse_error("[{\"headers\": [{\"name\": \"a\", \"value\": \"b\", "
                                 "\"type\": \"PathPrefix\"}], \"response\": {}}]"),
                     "probeResponse[0].headers[0].type: must be one of Exact, RegularExpression");

    char *json = json_with_repeat("[{\"headers\": [%s{\"name\": \"a\", \"value\": \"b\"}], "
                                  "\"response\": {}}]",
                                  "{\"name\": \"a\", \"value\": \"b\"},", 16);
    cr_assert_str_eq(parse_error(json), "probeResponse[0].headers: must have at most 16 items");
    free(json);
    json = json_with_repeat("[{\"headers\": [{\"name\": \"%s\", \"value\": \"b\"}], "
                            "\"response\": {}}]",
                            "n", 257);
    cr_assert_str_eq(parse_error(json),
                     "probeResponse[0].headers[0].name: must be at most 256 characters");
    free(json);
    json = json_with_repeat("[{\"headers\": [{\"name\": \"a\", \"value\": \"%s\"}], "
                            "\"response\": {}}]",
                            "v", 4097);
    cr_assert_str_eq(parse_error(json),
                     "probeResponse[0].headers[0].value: must be at most 4096 characters");
    free(json);
    json = json_with_repeat("[{\"headers\": [{\"name\": \"a\", \"value\": \"%s\"}], "
                            "\"response\": {}}]",
                            "v", 4096);
    probe_rules_free(rules_from(json));
    free(json);
}

Test(probe_parse, query_param_constraints)
{
    cr_assert_str_eq(parse_error("[{\"queryParams\": [{\"name\": \"a\", \"value\": \"b\", "
                                 "\"type\": \"exact\"}], \"response\": {}}]"),
                     "probeResponse[0].queryParams[0].type: must be one of Exact, "
                     "RegularExpression");
    char *json = json_with_repeat("[{\"queryParams\": [{\"name\": \"a\", \"value\": \"%s\"}], "
                                  "\"response\": {}}]",
                                  "v", 1025);
    cr_assert_str_eq(parse_error(json),
                     "probeResponse[0].queryParams[0].value: must be at most 1024 characters");
    free(json);
    json = json_with_repeat("[{\"queryParams\": [%s{\"name\": \"a\", \"value\": \"b\"}], "
                            "\"response\": {}}]",
                            "{\"name\": \"a\", \"value\": \"b\"},", 16);
    cr_assert_str_eq(parse_error(json), "probeResponse[0].queryParams: must have at most 16 items");
    free(json);
}

Test(probe_parse, status_enum_and_type)
{
    cr_assert_str_eq(parse_error("[{\"response\": {\"status\": 201}}]"),
                     "probeResponse[0].response.status: must be one of 200, 204, 400, 401, "
                     "403, 404, 500, 502, 503, 504");
    cr_assert_str_eq(parse_error("[{\"response\": {\"status\": 200.5}}]"),
                     "probeResponse[0].response.status: must be one of 200, 204, 400, 401, "
                     "403, 404, 500, 502, 503, 504");
    cr_assert_str_eq(parse_error("[{\"response\": {\"status\": \"200\"}}]"),
                     "probeResponse[0].response.status: must be an integer");
    cr_assert_str_eq(parse_error("[{\"response\": {\"body\": {}}}]"),
                     "probeResponse[0].response.body: must be a string");
    static const int allowed[] = {200, 204, 400, 401, 403, 404, 500, 502, 503, 504};
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        char json[128];
        snprintf(json, sizeof(json), "[{\"response\": {\"status\": %d}}]", allowed[i]);
        struct probe_rules *rules = rules_from(json);
        cr_assert_eq(match(rules, "GET", "/", NULL)->status, allowed[i]);
        probe_rules_free(rules);
    }
}

Test(probe_parse, invalid_regex_names_path_message_and_offset)
{
    cr_assert_str_eq(parse_error("[{\"path\": {\"type\": \"RegularExpression\", \"value\": "
                                 "\"/(abc\"}, \"response\": {}}]"),
                     "probeResponse[0].path.value: invalid regular expression at offset 5: "
                     "missing closing parenthesis");
    cr_assert_str_eq(parse_error("[{\"response\": {}}, {\"headers\": [{\"name\": \"a\", "
                                 "\"value\": \"[z-a]\", \"type\": \"RegularExpression\"}], "
                                 "\"response\": {}}]"),
                     "probeResponse[1].headers[0].value: invalid regular expression at offset "
                     "3: range out of order in character class");
    cr_assert_str_eq(parse_error("[{\"queryParams\": [{\"name\": \"a\", \"value\": \"a**\", "
                                 "\"type\": \"RegularExpression\"}], \"response\": {}}]"),
                     "probeResponse[0].queryParams[0].value: invalid regular expression at "
                     "offset 2: quantifier does not follow a repeatable item");
    /* RE2 has no \C either. */
    cr_assert(strstr(parse_error("[{\"path\": {\"type\": \"RegularExpression\", \"value\": "
                                 "\"a\\\\C\"}, \"response\": {}}]"),
                     "probeResponse[0].path.value: invalid regular expression at offset"));
}
