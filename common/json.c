/*
 * json: cJSON parsing that marks strings cut short by a NUL. See json.h.
 */
#include "common/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Marks in item->type, above cJSON's own bits (type in the low 8, then 256 and 512). */
#define JSON_NUL_IN_VALUE (1 << 12) /* the string value held a NUL */
#define JSON_NUL_IN_KEY (1 << 13)   /* the key held a NUL */
#define JSON_NUL_INSIDE (1 << 14)   /* some value or key below this item did */

/*
 * Calls back for each NUL that would reach a decoded string: a raw NUL byte, or the escape
 * \u0000 (not "\\u0000", an escaped backslash and the text "u0000"). `at` is the offset of the
 * byte or of the escape's backslash. Returns the number found.
 */
static size_t scan_nuls(const char *text, size_t len, void (*found)(char *copy, size_t at),
                        char *copy)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (text[i] == '\0') {
            n++;
            if (found)
                found(copy, i);
        } else if (text[i] == '\\' && i + 1 < len) {
            if (text[i + 1] == 'u' && i + 5 < len && memcmp(text + i + 2, "0000", 4) == 0) {
                n++;
                if (found)
                    found(copy, i);
            }
            i++; /* the escaped character is not the start of another escape */
        }
    }
    return n;
}

/* Makes the NUL at `at` in copy a \u0001 (raw byte 0x01, or the escape's last digit). */
static void make_soh(char *copy, size_t at)
{
    if (copy[at] == '\0')
        copy[at] = '\x01';
    else
        copy[at + 5] = '1';
}

static bool differ(const char *a, const char *b)
{
    return a && b && strcmp(a, b) != 0;
}

/*
 * Walks the list starting at `a` in step with its twin `b` (the same text, NULs made \u0001)
 * and marks where they differ. Returns whether anything was marked.
 */
static bool mark(cJSON *a, const cJSON *b)
{
    bool any = false;
    for (; a && b; a = a->next, b = b->next) {
        bool here = false;
        if (differ(a->string, b->string)) {
            a->type |= JSON_NUL_IN_KEY;
            here = true;
        }
        if (cJSON_IsString(a) && differ(a->valuestring, b->valuestring)) {
            a->type |= JSON_NUL_IN_VALUE;
            here = true;
        }
        if (mark(a->child, b->child))
            a->type |= JSON_NUL_INSIDE;
        any = any || here || (a->type & JSON_NUL_INSIDE);
    }
    return any;
}

cJSON *json_parse(const char *text, size_t len, const char **end, bool require_null_terminated)
{
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, end, require_null_terminated);
    /* With require_null_terminated the last byte is the terminator, not a NUL in a string. */
    size_t body = require_null_terminated && len > 0 ? len - 1 : len;
    if (!root || scan_nuls(text, body, NULL, NULL) == 0)
        return root;
    char *copy = malloc(len ? len : 1);
    if (!copy) {
        cJSON_Delete(root);
        return NULL;
    }
    memcpy(copy, text, len);
    scan_nuls(text, body, make_soh, copy);
    cJSON *twin = cJSON_ParseWithLengthOpts(copy, len, NULL, require_null_terminated);
    if (twin)
        mark(root, twin);
    cJSON_Delete(twin);
    free(copy);
    /* The twin differs only inside strings, so it parses; if it ever did not, refuse rather
     * than hand out unmarked strings. */
    if (!twin) {
        cJSON_Delete(root);
        return NULL;
    }
    return root;
}

bool json_value_has_nul(const cJSON *item)
{
    return item && (item->type & JSON_NUL_IN_VALUE);
}

bool json_key_has_nul(const cJSON *item)
{
    return item && (item->type & JSON_NUL_IN_KEY);
}

/* json_find_nul below `item`, whose path is path[0..len). */
static const cJSON *find(const cJSON *item, char *path, size_t len, size_t pathlen, bool *is_key)
{
    if (item->type & JSON_NUL_IN_VALUE) {
        *is_key = false;
        return item;
    }
    if (!(item->type & JSON_NUL_INSIDE))
        return NULL;
    size_t index = 0;
    for (const cJSON *child = item->child; child; child = child->next, index++) {
        if (child->type & JSON_NUL_IN_KEY) {
            *is_key = true;
            return child;
        }
        int n = cJSON_IsArray(item) ? snprintf(path + len, pathlen - len, "[%zu]", index)
                                    : snprintf(path + len, pathlen - len, "%s%s", len ? "." : "",
                                               child->string ? child->string : "");
        size_t end = n < 0 ? len : len + (size_t)n;
        if (end >= pathlen)
            end = pathlen - 1; /* cut short: snprintf stopped there */
        const cJSON *found = find(child, path, end, pathlen, is_key);
        if (found)
            return found;
        path[len] = '\0';
    }
    return NULL;
}

const cJSON *json_find_nul(const cJSON *item, const char *prefix, char *path, size_t pathlen,
                           bool *is_key)
{
    if (!item || pathlen == 0)
        return NULL;
    int n = snprintf(path, pathlen, "%s", prefix);
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len >= pathlen)
        len = pathlen - 1;
    const cJSON *found = find(item, path, len, pathlen, is_key);
    if (!found)
        snprintf(path, pathlen, "%s", prefix);
    return found;
}

const cJSON *json_get(const cJSON *obj, const char *name)
{
    return cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
}

const char *json_str(const cJSON *obj, const char *name)
{
    const cJSON *v = json_get(obj, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

const cJSON *json_obj(const cJSON *obj, const char *name)
{
    const cJSON *v = json_get(obj, name);
    return cJSON_IsObject(v) ? v : NULL;
}

const cJSON *json_arr(const cJSON *obj, const char *name)
{
    const cJSON *v = json_get(obj, name);
    return cJSON_IsArray(v) ? v : NULL;
}

double json_num(const cJSON *obj, const char *name, double dflt)
{
    const cJSON *v = json_get(obj, name);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

int json_int(const cJSON *obj, const char *name, int dflt)
{
    const cJSON *v = json_get(obj, name);
    return cJSON_IsNumber(v) ? v->valueint : dflt;
}

bool json_bool(const cJSON *obj, const char *name, bool dflt)
{
    const cJSON *v = json_get(obj, name);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

const char *json_type_name(const cJSON *item)
{
    if (cJSON_IsString(item))
        return "a string";
    if (cJSON_IsNumber(item))
        return "a number";
    if (cJSON_IsBool(item))
        return "a boolean";
    if (cJSON_IsNull(item))
        return "null";
    if (cJSON_IsArray(item))
        return "an array";
    return "an object";
}

const cJSON *json_check_keys(const cJSON *obj, const char *const *allowed, bool *repeated)
{
    for (const cJSON *item = obj ? obj->child : NULL; item; item = item->next) {
        bool known = false;
        for (const char *const *k = allowed; *k && !known; k++)
            known = strcmp(item->string, *k) == 0;
        if (!known) {
            *repeated = false;
            return item;
        }
        for (const cJSON *prev = obj->child; prev != item; prev = prev->next) {
            if (strcmp(prev->string, item->string) == 0) {
                *repeated = true;
                return item;
            }
        }
    }
    return NULL;
}

void json_keys_join(const char *const *keys, char *buf, size_t len)
{
    if (len == 0)
        return;
    buf[0] = '\0';
    for (const char *const *k = keys; *k; k++) {
        strncat(buf, k == keys ? "" : ", ", len - strlen(buf) - 1);
        strncat(buf, *k, len - strlen(buf) - 1);
    }
}

bool json_refuse_nul(const cJSON *item, const char *prefix, char *msg, size_t msglen)
{
    char where[512];
    bool is_key = false;
    const cJSON *found = json_find_nul(item, prefix, where, sizeof(where), &is_key);
    if (!found)
        return false;
    const char *sep = where[0] ? ": " : "";
    if (is_key)
        snprintf(msg, msglen,
                 "%s%sthe key \"%s\" followed by a NUL character (\\u0000): keys must not "
                 "contain one",
                 where, sep, found->string ? found->string : "");
    else
        snprintf(msg, msglen, "%s%smust not contain a NUL character (\\u0000)", where, sep);
    return true;
}
