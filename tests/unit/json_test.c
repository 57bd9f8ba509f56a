/*
 * json_test: json_parse marks every string value and key that held a NUL character, and
 * json_find_nul names where the first one is; the getters read members by type, and
 * json_check_keys finds unknown and repeated keys.
 */
#include <criterion/criterion.h>
#include <limits.h>
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

Test(json, getters_read_members_by_type_and_chain_through_null)
{
    cJSON *o = cJSON_Parse("{\"metadata\":{\"name\":\"a\",\"n\":3,\"b\":true},\"list\":[1],"
                           "\"big\":1e12,\"s\":\"x\"}");
    cr_assert_not_null(o);
    cr_assert_str_eq(json_str(json_get(o, "metadata"), "name"), "a");
    cr_assert_null(json_str(json_get(o, "nothing"), "name"));
    cr_assert_null(json_get(json_arr(o, "list"), "name"), "an array has no members");
    cr_assert_null(json_str(o, "metadata"), "an object is not a string");
    cr_assert_not_null(json_obj(o, "metadata"));
    cr_assert_null(json_obj(o, "list"));
    cr_assert_not_null(json_arr(o, "list"));
    cr_assert_null(json_arr(o, "metadata"));
    const cJSON *md = json_get(o, "metadata");
    cr_assert_eq(json_int(md, "n", -1), 3);
    cr_assert_eq(json_int(md, "name", -1), -1);
    cr_assert_eq(json_int(o, "big", 0), INT_MAX, "cJSON's valueint saturates");
    cr_assert_eq(json_num(o, "big", 0), 1e12);
    cr_assert_eq(json_num(NULL, "big", 7.5), 7.5);
    cr_assert_eq(json_bool(md, "b", false), true);
    cr_assert_eq(json_bool(md, "n", false), false);
    cr_assert_str_eq(json_type_name(json_get(o, "s")), "a string");
    cr_assert_str_eq(json_type_name(json_get(o, "list")), "an array");
    cr_assert_str_eq(json_type_name(md), "an object");
    cJSON_Delete(o);
}

Test(json, check_keys_finds_the_first_unknown_or_repeated_key)
{
    static const char *const allowed[] = {"a", "b", NULL};
    bool repeated = true;
    cJSON *ok = cJSON_Parse("{\"b\":1,\"a\":2}");
    cr_assert_null(json_check_keys(ok, allowed, &repeated));
    cJSON *unknown = cJSON_Parse("{\"a\":1,\"c\":2,\"a\":3}");
    const cJSON *bad = json_check_keys(unknown, allowed, &repeated);
    cr_assert_str_eq(bad->string, "c");
    cr_assert_eq(repeated, false);
    cJSON *twice = cJSON_Parse("{\"a\":1,\"b\":2,\"a\":3}");
    bad = json_check_keys(twice, allowed, &repeated);
    cr_assert_str_eq(bad->string, "a");
    cr_assert_eq(repeated, true);
    cr_assert_eq(bad, twice->child->next->next);
    char buf[64];
    json_keys_join(allowed, buf, sizeof(buf));
    cr_assert_str_eq(buf, "a, b");
    json_keys_join(allowed, buf, 3);
    cr_assert_str_eq(buf, "a,");
    cJSON_Delete(ok);
    cJSON_Delete(unknown);
    cJSON_Delete(twice);
}
