/*
 * json_test: json_parse marks every string value and key that held a NUL character, and
 * json_find_nul names where the first one is.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

static cJSON *parse(const char *text)
{
    cJSON *root = json_parse(text, strlen(text) + 1, NULL, true);
    cr_assert_not_null(root, "does not parse: %s", text);
    return root;
}

/* The path json_find_nul gives for `text` ("" when it finds nothing), and whether a key. */
static const char *nul_path(const char *text, bool *is_key)
{
    static char path[128];
    cJSON *root = parse(text);
    *is_key = false;
    const cJSON *found = json_find_nul(root, "", path, sizeof(path), is_key);
    if (!found)
        path[0] = '\0';
    cJSON_Delete(root);
    return path;
}

Test(json, a_nul_in_a_value_is_marked_and_found_with_its_path)
{
    cJSON *root = parse("{\"services\": [{\"name\": \"ok\"}, {\"name\": \"a\\u0000b\"}]}");
    const cJSON *bad =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "services"), 1), "name");
    const cJSON *good =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "services"), 0), "name");
    cr_assert_str_eq(bad->valuestring, "a"); /* what cJSON alone would hand out */
    cr_assert(json_value_has_nul(bad));
    cr_assert(cJSON_IsString(bad)); /* the mark leaves cJSON's view of the item alone */
    cr_assert_not(json_value_has_nul(good));
    cr_assert_not(json_key_has_nul(bad));
    char path[64];
    bool is_key = true;
    cr_assert_eq(json_find_nul(root, "", path, sizeof(path), &is_key), bad);
    cr_assert_str_eq(path, "services[1].name");
    cr_assert_not(is_key);
    cr_assert_eq(json_find_nul(root, "file", path, sizeof(path), &is_key), bad);
    cr_assert_str_eq(path, "file.services[1].name");
    cJSON_Delete(root);
}

Test(json, a_nul_anywhere_in_a_string_and_in_keys)
{
    bool is_key;
    cr_assert_str_eq(nul_path("{\"a\": \"\\u0000\"}", &is_key), "a");
    cr_assert_str_eq(nul_path("{\"a\": [\"x\", \"y\\u0000\"]}", &is_key), "a[1]");
    cr_assert_str_eq(nul_path("{\"a\": {\"b\": [[1, {\"c\": \"\\u0000z\"}]]}}", &is_key),
                     "a.b[0][1].c");
    cr_assert_str_eq(nul_path("\"top\\u0000\"", &is_key), "");
    cr_assert_str_eq(nul_path("{\"a\": {\"k\\u0000ey\": 1}}", &is_key), "a");
    cr_assert(is_key);
    /* Document order: the first one. */
    cr_assert_str_eq(nul_path("{\"a\": \"x\\u0000\", \"b\": \"\\u0000\"}", &is_key), "a");
}

Test(json, a_top_level_string_with_a_nul_is_found)
{
    cJSON *root = parse("\"top\\u0000\"");
    char path[16];
    bool is_key;
    cr_assert_eq(json_find_nul(root, "doc", path, sizeof(path), &is_key), root);
    cr_assert_str_eq(path, "doc");
    cJSON_Delete(root);
}

Test(json, other_escapes_and_an_escaped_backslash_are_not_nuls)
{
    bool is_key;
    cr_assert_str_eq(nul_path("{\"a\": \"\\\\u0000\", \"b\": \"\\u0001\\u00000\"}", &is_key), "b");
    cr_assert_str_eq(nul_path("{\"a\": \"\\\\u0000\", \"b\": \"\\u0001 \\\\\\\\u0000\"}", &is_key),
                     "");
    cJSON *root = parse("{\"a\": \"x\\\\u0000y\"}");
    cr_assert_str_eq(cJSON_GetObjectItem(root, "a")->valuestring, "x\\u0000y");
    cr_assert_not(json_value_has_nul(cJSON_GetObjectItem(root, "a")));
    cJSON_Delete(root);
}

Test(json, a_raw_nul_byte_in_a_string_is_marked_too)
{
    const char text[] = "{\"a\": \"x\0y\"}";
    cJSON *root = json_parse(text, sizeof(text) - 1, NULL, false);
    cr_assert_not_null(root);
    cr_assert(json_value_has_nul(cJSON_GetObjectItem(root, "a")));
    cJSON_Delete(root);
}

Test(json, marks_survive_detach_and_duplicate)
{
    cJSON *root =
        parse("{\"type\": \"ADDED\", \"object\": {\"spec\": {\"service\": \"web\\u0000x\"}}}");
    cJSON *object = cJSON_DetachItemFromObject(root, "object");
    cJSON_Delete(root);
    cJSON *copy = cJSON_Duplicate(object, true);
    char path[64];
    bool is_key;
    cr_assert_not_null(
        json_find_nul(cJSON_GetObjectItem(copy, "spec"), "spec", path, sizeof(path), &is_key));
    cr_assert_str_eq(path, "spec.service");
    cJSON_Delete(copy);
    cJSON_Delete(object);
}

Test(json, malformed_text_is_refused_as_cjson_refuses_it)
{
    const char *end = NULL;
    const char *text = "{\"a\": \"\\u0000\",}";
    cr_assert_null(json_parse(text, strlen(text) + 1, &end, true));
    cr_assert_not_null(end);
    cr_assert_null(json_parse("{} x", 5, NULL, true));
}

Test(json, refuse_nul_writes_one_message_naming_the_path)
{
    char msg[256] = "untouched";
    cJSON *root = parse("{\"spec\": {\"service\": \"web\\u0000x\"}}");
    cr_assert(json_refuse_nul(cJSON_GetObjectItem(root, "spec"), "spec", msg, sizeof(msg)));
    cr_assert_str_eq(msg, "spec.service: must not contain a NUL character (\\u0000)");
    cJSON_Delete(root);
    root = parse("{\"a\": {\"na\\u0000me\": 1}}");
    cr_assert(json_refuse_nul(root, "", msg, sizeof(msg)));
    cr_assert_str_eq(msg, "a: the key \"na\" followed by a NUL character (\\u0000): keys must "
                          "not contain one");
    cJSON_Delete(root);
    root = parse("{\"x\\u0000\": 1}");
    cr_assert(json_refuse_nul(root, "", msg, sizeof(msg)));
    cr_assert_str_eq(msg, "the key \"x\" followed by a NUL character (\\u0000): keys must not "
                          "contain one");
    cJSON_Delete(root);
    root = parse("{\"fine\": \"\\\\u0000\"}");
    strcpy(msg, "untouched");
    cr_assert_not(json_refuse_nul(root, "", msg, sizeof(msg)));
    cr_assert_str_eq(msg, "untouched");
    cJSON_Delete(root);
}
