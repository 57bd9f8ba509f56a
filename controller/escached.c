/*
 * escached: an ElastiService as the controller's cache keeps it. See escached.h.
 */
#include "controller/escached.h"
#include "common/json.h"
#include "common/strblock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct es_cached *es_cached_decode(const cJSON *es, char *err, size_t errlen)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(es, "metadata");
    const char *name = json_str(md, "name"), *ns = json_str(md, "namespace");
    if (!name || !ns) {
        snprintf(err, errlen, "ElastiService %s/%s: metadata.%s is not a string", ns ? ns : "?",
                 name ? name : "?", name ? "namespace" : "name");
        return NULL;
    }
    const char *uid = json_str(md, "uid"), *rv = json_str(md, "resourceVersion");
    const cJSON *fins = cJSON_GetObjectItemCaseSensitive(md, "finalizers");
    size_t n_fins = 0;
    size_t strings =
        strblock_size(name) + strblock_size(ns) + strblock_size(uid) + strblock_size(rv);
    const cJSON *f;
    cJSON_ArrayForEach(f, fins)
    {
        if (cJSON_IsString(f)) {
            strings += strblock_size(f->valuestring);
            n_fins++;
        }
    }
    struct es_cached *e = calloc(1, sizeof(*e) + n_fins * sizeof(char *) + strings);
    if (!e) {
        snprintf(err, errlen, "ElastiService %s/%s: out of memory", ns, name);
        return NULL;
    }
    const char **fv = (const char **)(e + 1);
    char *at = (char *)(fv + n_fins);
    e->name = strblock_copy(&at, name);
    e->ns = strblock_copy(&at, ns);
    e->uid = strblock_copy(&at, uid);
    e->resource_version = strblock_copy(&at, rv);
    cJSON_ArrayForEach(f, fins)
    {
        if (cJSON_IsString(f))
            fv[e->n_finalizers++] = strblock_copy(&at, f->valuestring);
    }
    e->finalizers = fv;
    return e;
}

void es_cached_free(struct es_cached *e)
{
    free(e);
}
