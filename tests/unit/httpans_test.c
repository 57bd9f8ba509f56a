/* httpans: the framing of holdfast's own answers (RFC 9110, RFC 9112). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "resolver/httpans.h"

static bool has_field(const char *answer, const char *field)
{
    const char *end = strstr(answer, "\r\n\r\n");
    const char *at = strstr(answer, field);
    return at && end && at < end;
}

Test(httpans, no_content_carries_no_content_length)
{
    /* RFC 9110 8.6: a server MUST NOT send Content-Length in a 204 response. */
    size_t len = 0;
    char *a = httpans_probe(204, "{\"x\":1}", 7, false, false, &len);
    cr_assert_not_null(a);
    cr_assert(strncmp(a, "HTTP/1.1 204 No Content\r\n", 25) == 0, "%s", a);
    cr_assert(!has_field(a, "Content-Length:"), "%s", a);
    cr_assert(strcmp(a + len - 4, "\r\n\r\n") == 0, "no body after the head: %s", a);
    free(a);
}

Test(httpans, other_answers_keep_their_content_length)
{
    size_t len = 0;
    char *a = httpans_probe(200, "{\"x\":1}", 7, false, false, &len);
    cr_assert(has_field(a, "Content-Length: 7\r\n"), "%s", a);
    cr_assert(strcmp(a + len - 7, "{\"x\":1}") == 0, "%s", a);
    free(a);
    a = httpans_probe(200, "{\"x\":1}", 7, true, false, &len); /* HEAD: length, no body */
    cr_assert(has_field(a, "Content-Length: 7\r\n"), "%s", a);
    cr_assert(strcmp(a + len - 4, "\r\n\r\n") == 0, "%s", a);
    free(a);
}

Test(httpans, datapath_probe_answer_echoes_the_nonce_without_content_length)
{
    size_t len = 0;
    char *a = httpans_datapath_probe("abc-123_X", 9, &len);
    cr_assert_not_null(a);
    cr_assert(has_field(a, "Holdfast-Probe: abc-123_X\r\n"), "%s", a);
    cr_assert(has_field(a, "Connection: close\r\n"), "%s", a);
    cr_assert(!has_field(a, "Content-Length:"), "%s", a);
    free(a);
    cr_assert_null(httpans_datapath_probe("a b", 3, &len), "an invalid nonce is never echoed");
}
