/*
 * escached: an ElastiService as the controller's cache keeps it (controller.c's ElastiService
 * informer, a compact cache: controller/informer.h). Only what holdfast reads of the cache
 * after an event's handlers returned, in one allocation: its cJSON tree, lean and without the
 * spec, took ~1.8 KB; this ~130 bytes (`route_bench --cache-bytes`).
 *
 * Who reads what: the informer (name, namespace, uid, resourceVersion); a status write's answer
 * (resourceVersion: was its echo delivered already?); the finalizer patches, which carry
 * metadata.finalizers whole (the finalizers). Everything else of an ElastiService is parsed
 * from the event's tree, which its handlers get, into the controller's struct es (the spec once
 * per generation, the status and the rest of the metadata at every event).
 */
#ifndef HOLDFAST_ESCACHED_H
#define HOLDFAST_ESCACHED_H

#include <cjson/cJSON.h>
#include <stddef.h>

struct es_cached {
    const char *ns, *name;
    const char *uid, *resource_version; /* or NULL when the object had none */
    /* metadata.finalizers: its string members, in order (others are not kept) */
    const char *const *finalizers;
    size_t n_finalizers;
};

/*
 * Decodes `es` (borrowed) into a new es_cached (free with es_cached_free). NULL with a message
 * in err naming the ElastiService when it has no metadata.name or metadata.namespace, or when
 * out of memory.
 */
struct es_cached *es_cached_decode(const cJSON *es, char *err, size_t errlen);

void es_cached_free(struct es_cached *e);

#endif
