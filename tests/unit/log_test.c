/* log: one JSON object per line, fields typed, strings escaped, levels filtered. */
#include <criterion/criterion.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

/* Runs fn with stderr captured and returns what it wrote (caller frees). */
static char *capture(void (*fn)(void))
{
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    FILE *tmp = tmpfile();
    cr_assert_not_null(tmp);
    dup2(fileno(tmp), STDERR_FILENO);
    fn();
    dup2(saved, STDERR_FILENO);
    close(saved);
    long n = ftell(tmp);
    fseek(tmp, 0, SEEK_END);
    n = ftell(tmp);
    rewind(tmp);
    char *out = calloc(1, (size_t)n + 1);
    size_t got = fread(out, 1, (size_t)n, tmp);
    out[got] = '\0';
    fclose(tmp);
    return out;
}

static void write_typed(void)
{
    log_set_level(LOG_INFO);
    log_info("wake command exited", "service=%s status=%d big=%zu ok=%b ratio=%f none=%s",
             "default/hello", 3, (size_t)1234567, 1, 0.5, (const char *)NULL);
}

Test(log, writes_one_json_line_with_typed_fields)
{
    char *out = capture(write_typed);
    size_t len = strlen(out);
    cr_assert(len > 0 && out[len - 1] == '\n', "one line, newline-terminated: %s", out);
    cr_assert_null(strchr(out, '\n') == out + len - 1 ? NULL : out, "exactly one line");
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j, "valid JSON: %s", out);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "level")->valuestring, "info");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "msg")->valuestring, "wake command exited");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "service")->valuestring, "default/hello");
    cr_assert_eq(cJSON_GetObjectItem(j, "status")->valueint, 3);
    cr_assert_eq(cJSON_GetObjectItem(j, "big")->valuedouble, 1234567.0);
    cr_assert(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    cr_assert_float_eq(cJSON_GetObjectItem(j, "ratio")->valuedouble, 0.5, 1e-9);
    cr_assert(cJSON_IsNull(cJSON_GetObjectItem(j, "none")));
    const char *ts = cJSON_GetObjectItem(j, "ts")->valuestring;
    cr_assert_eq(strlen(ts), 24, "RFC 3339 UTC with milliseconds: %s", ts);
    cr_assert_eq(ts[23], 'Z');
    cJSON_Delete(j);
    free(out);
}

static void write_hostile(void)
{
    log_set_level(LOG_INFO);
    log_warn("bad request", "host=%s", "evil\"}\n{\"level\":\"error\"\x01");
}

Test(log, escapes_request_data)
{
    char *out = capture(write_hostile);
    cr_assert_eq(strchr(out, '\n'), out + strlen(out) - 1, "no injected line: %s", out);
    cJSON *j = cJSON_Parse(out);
    cr_assert_not_null(j);
    cr_assert_str_eq(cJSON_GetObjectItem(j, "host")->valuestring,
                     "evil\"}\n{\"level\":\"error\"\x01");
    cr_assert_str_eq(cJSON_GetObjectItem(j, "level")->valuestring, "warn");
    cJSON_Delete(j);
    free(out);
}

static void write_filtered(void)
{
    log_set_level(LOG_WARN);
    log_info("hidden", NULL);
    log_debug("hidden too", NULL);
    log_error("shown", NULL);
    log_set_level(LOG_INFO);
}

Test(log, filters_by_level)
{
    char *out = capture(write_filtered);
    cr_assert_null(strstr(out, "hidden"));
    cr_assert_not_null(strstr(out, "\"shown\""));
    free(out);
}

Test(log, parses_level_names)
{
    enum log_level l;
    cr_assert_eq(log_parse_level("debug", &l), 0);
    cr_assert_eq(l, LOG_DEBUG);
    cr_assert_eq(log_parse_level("error", &l), 0);
    cr_assert_eq(l, LOG_ERROR);
    cr_assert_eq(log_parse_level("verbose", &l), -1);
}
