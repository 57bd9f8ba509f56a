/* waitpage: the waitingPage setting parsed (defaults, every field, each refusal naming the
 * field), the page rendered once (built-in: the service named and escaped, the refresh; given:
 * byte for byte), and each answer (503, Retry-After, Refresh, no-store, Content-Length; HEAD
 * without the body; Connection: close only when the connection ends). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "resolver/dataplane.h"
#include "resolver/waitpage.h"

static int parse(const char *json, struct waiting_page_spec *p, char *err, size_t errlen)
{
    cJSON *j = json_parse(json, strlen(json) + 1, NULL, true);
    cr_assert_not_null(j, "%s", json);
    int rc = waiting_page_parse(j, "spec.waitingPage", p, err, errlen);
    cJSON_Delete(j);
    return rc;
}

/* The message for `json`, which must be refused. */
static const char *refused(const char *json)
{
    static char err[512];
    struct waiting_page_spec p = {0};
    err[0] = '\0';
    cr_assert_eq(parse(json, &p, err, sizeof(err)), -1, "accepted: %s", json);
    waiting_page_spec_clear(&p);
    return err;
}

Test(waitpage, absent_or_null_is_off_with_the_defaults)
{
    struct waiting_page_spec p = {0};
    char err[256] = "";
    cr_assert_eq(waiting_page_parse(NULL, "spec.waitingPage", &p, err, sizeof(err)), 0);
    cr_assert_not(p.enabled);
    cr_assert_eq(p.retry_after_s, WAITING_PAGE_DEFAULT_RETRY_S);
    cr_assert_null(p.html);
    cr_assert_eq(parse("null", &p, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(p.enabled);
    cr_assert_eq(parse("{}", &p, err, sizeof(err)), 0, "%s", err);
    cr_assert_not(p.enabled);
    cr_assert_eq(p.retry_after_s, 2);
    cr_assert_null(p.html);
    waiting_page_spec_clear(&p);
}

Test(waitpage, reads_every_field)
{
    struct waiting_page_spec p = {0};
    char err[256] = "";
    cr_assert_eq(parse("{\"enabled\":true,\"retryAfterSeconds\":3600,\"html\":\"<p>hi</p>\"}", &p,
                       err, sizeof(err)),
                 0, "%s", err);
    cr_assert(p.enabled);
    cr_assert_eq(p.retry_after_s, 3600);
    cr_assert_eq(p.html_len, 9);
    cr_assert_eq(memcmp(p.html, "<p>hi</p>", 9), 0);
    /* Parsed again over a parsed setting: nothing of the first is kept. */
    cr_assert_eq(parse("{\"enabled\":false,\"retryAfterSeconds\":1}", &p, err, sizeof(err)), 0);
    cr_assert_not(p.enabled);
    cr_assert_eq(p.retry_after_s, 1);
    cr_assert_null(p.html);
    waiting_page_spec_clear(&p);
}

Test(waitpage, html_of_exactly_the_limit_is_taken)
{
    size_t n = WAITING_PAGE_MAX_HTML;
    static char json[WAITING_PAGE_MAX_HTML + 64];
    int k = sprintf(json, "{\"enabled\":true,\"html\":\"");
    memset(json + k, 'a', n);
    strcpy(json + k + n, "\"}");
    struct waiting_page_spec p = {0};
    char err[256] = "";
    cr_assert_eq(parse(json, &p, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(p.html_len, n);
    /* One byte more is refused, with the size. */
    json[k + n] = 'a';
    strcpy(json + k + n + 1, "\"}");
    cr_assert_eq(parse(json, &p, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "spec.waitingPage.html: 65537 bytes, more than the 65536 allowed");
    waiting_page_spec_clear(&p);
}

Test(waitpage, refusals_name_the_field)
{
    cr_assert_str_eq(refused("[]"), "spec.waitingPage: must be an object, not an array");
    cr_assert_str_eq(refused("true"), "spec.waitingPage: must be an object, not a boolean");
    cr_assert_str_eq(refused("{\"enable\":true}"),
                     "spec.waitingPage: unknown key \"enable\" (expected one of enabled, "
                     "retryAfterSeconds, html)");
    cr_assert_str_eq(refused("{\"enabled\":true,\"enabled\":false}"),
                     "spec.waitingPage: key \"enabled\" appears twice");
    cr_assert_str_eq(refused("{\"enabled\":\"true\"}"),
                     "spec.waitingPage.enabled: must be true or false, not a string");
    cr_assert_str_eq(refused("{\"enabled\":1}"),
                     "spec.waitingPage.enabled: must be true or false, not a number");
    const char *range = "spec.waitingPage.retryAfterSeconds: must be an integer from 1 to 3600";
    cr_assert_str_eq(refused("{\"retryAfterSeconds\":0}"), range);
    cr_assert_str_eq(refused("{\"retryAfterSeconds\":-2}"), range);
    cr_assert_str_eq(refused("{\"retryAfterSeconds\":3601}"), range);
    cr_assert_str_eq(refused("{\"retryAfterSeconds\":1e30}"), range);
    cr_assert_str_eq(refused("{\"retryAfterSeconds\":2.5}"), range);
    cr_assert_str_eq(refused("{\"retryAfterSeconds\":\"2\"}"),
                     "spec.waitingPage.retryAfterSeconds: must be an integer from 1 to 3600, "
                     "not a string");
    cr_assert_str_eq(refused("{\"html\":42}"), "spec.waitingPage.html: must be a string, not a "
                                               "number");
    cr_assert_str_eq(refused("{\"html\":\"\"}"),
                     "spec.waitingPage.html: must not be empty (leave it out for the built-in "
                     "page)");
    /* A disabled page is checked all the same: a mistake shows before it is switched on. */
    cr_assert_str_eq(refused("{\"enabled\":false,\"retryAfterSeconds\":0}"), range);
}

/* The answer as a string, and its length. */
static char *answer(const struct waitpage *p, bool head_request, bool close, size_t *len)
{
    char *msg = waitpage_answer(p, head_request, close, len);
    cr_assert_not_null(msg);
    char *s = malloc(*len + 1);
    memcpy(s, msg, *len);
    s[*len] = '\0';
    free(msg);
    return s;
}

Test(waitpage, builtin_page_names_the_service_escaped_and_refreshes)
{
    struct waitpage *p = waitpage_new("shop", "web<b>&\"x'", NULL, 0, 7);
    cr_assert_not_null(p);
    char *body = strndup(p->body, p->body_len);
    cr_assert_not_null(strstr(body, "<meta http-equiv=\"refresh\" content=\"7\">"), "%s", body);
    cr_assert_not_null(strstr(body, "web&lt;b&gt;&amp;&quot;x&#39;"), "%s", body);
    cr_assert_null(strstr(body, "web<b>"), "%s", body);
    cr_assert_not_null(strstr(body, "(namespace shop) is starting"), "%s", body);
    free(body);
    waitpage_free(p);
}

Test(waitpage, answer_carries_the_headers_and_the_page)
{
    static const char html[] = "<html>custom \xc3\xa9</html>\n";
    struct waitpage *p = waitpage_new("ns", "web", html, sizeof(html) - 1, 5);
    cr_assert_not_null(p);
    size_t len;
    char *s = answer(p, false, false, &len);
    char expect[512];
    snprintf(expect, sizeof(expect),
             "HTTP/1.1 503 Service Unavailable\r\n"
             "Content-Type: text/html; charset=utf-8\r\n"
             "Content-Length: %zu\r\n"
             "Retry-After: 5\r\n"
             "Refresh: 5\r\n"
             "Cache-Control: no-store\r\n"
             "\r\n%s",
             sizeof(html) - 1, html);
    cr_assert_str_eq(s, expect);
    cr_assert_eq(len, strlen(expect));
    free(s);

    /* HEAD: the same head (Content-Length the page's), no body. */
    s = answer(p, true, false, &len);
    cr_assert_not_null(strstr(s, "Content-Length: 23\r\n"), "%s", s);
    cr_assert(len >= 4 && memcmp(s + len - 4, "\r\n\r\n", 4) == 0, "%s", s);
    cr_assert_null(strstr(s, "custom"));
    free(s);

    /* A connection that ends after it says so. */
    s = answer(p, false, true, &len);
    cr_assert_not_null(strstr(s, "Cache-Control: no-store\r\nConnection: close\r\n\r\n<html>"),
                       "%s", s);
    free(s);
    waitpage_free(p);
    waitpage_free(NULL);
}
