/*
 * json: parsing JSON with cJSON without losing track of a NUL character inside a string.
 *
 * JSON can carry a NUL inside a string ("a\u0000b"). cJSON decodes it into the string, and
 * every C string function then stops there: "a\u0000b" reads as "a", a service or a Service
 * name silently becomes another. json_parse parses as cJSON does and marks every string value
 * and every object key that held a NUL, so that the code reading a document can refuse such a
 * string, naming where it is (json_find_nul), instead of using a shorter one.
 *
 * A NUL gets into a parsed string only through the escape \u0000 or a raw NUL byte. A text
 * with neither (nearly all) is parsed once, exactly as cJSON alone parses it. Otherwise it is
 * parsed a second time with each NUL made \u0001, and every string that comes out different
 * is marked: the two trees differ only there.
 *
 * The marks are bits of cJSON's item->type above the ones cJSON uses (its type tests mask the
 * low 8 bits; 256 and 512 are its own flags). cJSON_Detach*, cJSON_Duplicate and cJSON_Delete
 * keep or ignore them; an item built later by hand carries none.
 *
 * Then the one family of getters that reads members: each takes a NULL or non-object `obj` as
 * having no members, so lookups chain without checks: json_str(json_get(o, "metadata"), "name").
 * They borrow from the tree (nothing to free) and never fail: a missing member or one of another
 * type reads as NULL or the default given. Parsers that must say what is wrong with a member
 * look it up with json_get and name its type with json_type_name.
 */
#ifndef HOLDFAST_JSON_H
#define HOLDFAST_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>

/*
 * Parses `len` bytes of `text` as cJSON_ParseWithLengthOpts(text, len, end,
 * require_null_terminated) does (with require_null_terminated, `len` counts the terminating
 * NUL, as cJSON wants), then marks the strings that held a NUL. Returns the tree (the caller
 * frees it with cJSON_Delete) or NULL as cJSON does, with *end (when not NULL) where parsing
 * stopped.
 */
cJSON *json_parse(const char *text, size_t len, const char **end, bool require_null_terminated);

/* The member `name` of object `obj` (case-sensitive), or NULL. */
const cJSON *json_get(const cJSON *obj, const char *name);

/* The string member `name` of object `obj`, or NULL (no such member, not a string, not an
 * object). */
const char *json_str(const cJSON *obj, const char *name);

/* The member `name` if it is an object / an array, or NULL. */
const cJSON *json_obj(const cJSON *obj, const char *name);
const cJSON *json_arr(const cJSON *obj, const char *name);

/* The number member `name`, or dflt: as a double, or as cJSON's int (valueint: saturated). */
double json_num(const cJSON *obj, const char *name, double dflt);
int json_int(const cJSON *obj, const char *name, int dflt);

/* The boolean member `name`, or dflt. */
bool json_bool(const cJSON *obj, const char *name, bool dflt);

/* "a string", "a number", "a boolean", "null", "an array" or "an object": for messages. */
const char *json_type_name(const cJSON *item);

/*
 * Checks the keys of object `obj` against `allowed` (NULL-terminated). Returns NULL when each is
 * allowed and none repeats; otherwise the first member that is not allowed or repeats an earlier
 * key, with *repeated telling which. The caller words the message.
 */
const cJSON *json_check_keys(const cJSON *obj, const char *const *allowed, bool *repeated);

/* Writes the NULL-terminated `keys` as "a, b, c" into buf (cut short if len is small). */
void json_keys_join(const char *const *keys, char *buf, size_t len);

/* True when the string value of `item` held a NUL: valuestring is only what came before it. */
bool json_value_has_nul(const cJSON *item);

/* True when the key of `item` (item->string) held a NUL. */
bool json_key_has_nul(const cJSON *item);

/*
 * Finds, in document order, the first string value or key at or under `item` that held a NUL.
 * Returns the item found (for a key, the member whose key it is) or NULL when there is none.
 * `path` receives where it is: `prefix` for `item` itself, then ".key" and "[3]" as in
 * "services[0].name" (no leading dot when prefix is ""); for a key, the path of the object
 * holding it. *is_key tells which of the two it found. path is cut short if pathlen is small.
 */
const cJSON *json_find_nul(const cJSON *item, const char *prefix, char *path, size_t pathlen,
                           bool *is_key);

/*
 * The message for the first NUL json_find_nul finds at or under `item`: "PATH: must not
 * contain a NUL character (\u0000)", or for a key "PATH: the key "name" followed by a NUL
 * character (\u0000): keys must not contain one" (PATH left out when it is ""). Returns true
 * with the message in msg when there is one, false (msg untouched) when there is none.
 */
bool json_refuse_nul(const cJSON *item, const char *prefix, char *msg, size_t msglen);

#endif
