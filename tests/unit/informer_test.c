/*
 * informer: a compact cache (informer_new_compact) over the scripted HTTP stand-in of
 * tests/fuzz. Each object is decoded once by the kind's codec, the tree is not kept; the
 * handlers get decoded items, and the informer's own rules (a replayed resourceVersion is no
 * event, a DELETED event hands over its last state, a relist emits only the differences, an
 * object recreated under its name is a delete then an add) hold as they do for cJSON caches. An
 * object the codec refuses is not cached, and the rest are. With handlers that take the tree
 * (on_add_obj, on_update_obj) they get each event's whole object besides the item, the cache
 * still keeps only the item.
 */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "controller/kube/informer.h"
#include "controller/kube/kube.h"
#include "controller/kube/kubeconfig.h"
#include "tests/fuzz/fake_http.h"

/* The test kind: a ConfigMap-like object, of which the cache keeps data.value only. */
struct thing {
    char *ns, *name, *uid, *rv;
    char *value; /* data.value, or NULL */
};

static int decodes, frees;

static char *dup_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? strdup(v->valuestring) : NULL;
}

static void *thing_decode(const cJSON *obj, char *err, size_t errlen)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(obj, "data");
    if (cJSON_GetObjectItemCaseSensitive(data, "refuse")) {
        snprintf(err, errlen, "thing %s: data.refuse is set",
                 cJSON_GetObjectItemCaseSensitive(md, "name")->valuestring);
        return NULL;
    }
    struct thing *t = calloc(1, sizeof(*t));
    cr_assert_not_null(t);
    t->ns = dup_str(md, "namespace");
    t->name = dup_str(md, "name");
    t->uid = dup_str(md, "uid");
    t->rv = dup_str(md, "resourceVersion");
    t->value = dup_str(data, "value");
    decodes++;
    return t;
}

static void thing_free(void *item)
{
    struct thing *t = item;
    free(t->ns);
    free(t->name);
    free(t->uid);
    free(t->rv);
    free(t->value);
    free(t);
    frees++;
}

static const char *thing_rv(const void *item)
{
    return ((const struct thing *)item)->rv;
}

static const char *thing_uid(const void *item)
{
    return ((const struct thing *)item)->uid;
}

static const struct informer_codec codec = {thing_decode, thing_free, thing_rv, thing_uid};

/* What the handlers saw, one "verb name=value" per call. */
static char seen[2048];

static void note(const char *verb, const struct thing *t)
{
    size_t n = strlen(seen);
    snprintf(seen + n, sizeof(seen) - n, "%s%s %s=%s", n ? "; " : "", verb, t->name,
             t->value ? t->value : "-");
}

static void on_add(const void *item, void *arg)
{
    note("add", item);
}

static void on_update(const void *old, const void *item, void *arg)
{
    note("update-from", old);
    note("to", item);
}

static void on_delete(const void *item, void *arg)
{
    note("delete", item);
}

static bool synced;

static void on_synced(void *arg)
{
    synced = true;
}

static struct event_base *base;
static struct kubeconfig *kc;
static struct kube_client *client;
static struct informer *inf;

static void settle(void)
{
    for (int i = 0; i < 64; i++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        if (event_base_get_num_events(base, EVENT_BASE_COUNT_ACTIVE) == 0)
            break;
    }
}

static struct http_request *pending(const char *a, const char *b)
{
    for (int i = 0; i < 100; i++) {
        struct http_request *r = fake_http_pick(a, strlen(a));
        if (r && strstr(fake_http_what(r), b))
            return r;
        settle();
    }
    cr_assert_fail("no pending request %s ... %s", a, b);
    return NULL;
}

static void answer(struct http_request *r, const char *body, bool keep_open)
{
    fake_http_answer(r, 200, body, strlen(body), keep_open, false);
    settle();
}

/* The tree handlers: the item and what only the tree holds (data.other, dropped by the codec). */
static void note_tree(const cJSON *obj)
{
    const cJSON *o =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "data"), "other");
    size_t n = strlen(seen);
    snprintf(seen + n, sizeof(seen) - n, " other=%s", cJSON_IsString(o) ? o->valuestring : "-");
}

static void on_add_obj(const void *item, const cJSON *obj, void *arg)
{
    note("add", item);
    note_tree(obj);
}

static void on_update_obj(const void *old, const void *item, const cJSON *obj, void *arg)
{
    note("update-from", old);
    note("to", item);
    note_tree(obj);
}

#define THING(name, uid, rv, value)                                                                \
    "{\"metadata\":{\"name\":\"" name "\",\"namespace\":\"ns\",\"uid\":\"" uid                     \
    "\",\"resourceVersion\":\"" rv "\",\"managedFields\":[{\"manager\":\"kubectl\"}]},"            \
    "\"data\":{\"value\":\"" value "\",\"other\":\"dropped\"}}"

static void setup_with(double qps, int burst, bool trees)
{
    log_set_level(LOG_ERROR);
    base = event_base_new();
    char path[] = "/tmp/holdfast-informer-test.XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs("clusters:\n- name: c\n  cluster: {server: 'https://kube.invalid:6443'}\n"
          "contexts:\n- name: x\n  context: {cluster: c, user: u, namespace: default}\n"
          "current-context: x\nusers:\n- name: u\n  user: {token: fake}\n",
          f);
    fclose(f);
    char err[256];
    cr_assert_eq(kubeconfig_load_file(path, NULL, &kc, err, sizeof(err)), 0, "%s", err);
    unlink(path);
    struct kube_client_opts ko = {.qps = qps, .burst = burst};
    client = kube_client_new(base, kc, &ko, err, sizeof(err));
    cr_assert_not_null(client, "%s", err);
    struct informer_opts io = {.res = {"", "v1", "configmaps", true}, .ns = "ns"};
    struct informer_item_handlers h = {on_add, on_update, on_delete, on_synced, NULL, NULL};
    if (trees)
        h = (struct informer_item_handlers){.on_delete = on_delete,
                                            .on_synced = on_synced,
                                            .on_add_obj = on_add_obj,
                                            .on_update_obj = on_update_obj};
    inf = informer_new_compact(client, &io, &codec, &h, NULL);
    cr_assert_not_null(inf);
    seen[0] = '\0';
    decodes = frees = 0;
    synced = false;
}

static void setup(void)
{
    setup_with(1e9, 1000000, false);
}

static void setup_trees(void)
{
    setup_with(1e9, 1000000, true);
}

static void teardown(void)
{
    informer_free(inf);
    for (struct http_request *r; (r = fake_http_pick_plain());)
        fake_http_answer(r, 0, "", 0, false, false);
    settle();
    kube_client_free(client);
    kubeconfig_free(kc);
    event_base_free(base);
    cr_expect_eq(decodes, frees, "every decoded item is freed once");
}

TestSuite(informer_compact, .init = setup, .fini = teardown, .timeout = 30);

/* Lists a and b (and one the codec refuses); returns the watch that follows. */
static struct http_request *list_ab(void)
{
    informer_start(inf);
    answer(
        pending("GET", "configmaps"),
        "{\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[" THING(
            "a", "ua", "1",
            "one") "," THING("b", "ub", "1",
                             "two") ",{\"metadata\":{\"name\":\"bad\",\"namespace\":\"ns\","
                                    "\"resourceVersion\":\"1\"},\"data\":{\"refuse\":\"yes\"}}]}",
        false);
    return pending("GET", "watch=true");
}

Test(informer_compact, the_cache_keeps_decoded_items_and_the_handlers_get_them)
{
    list_ab();
    cr_assert(synced);
    cr_expect_str_eq(seen, "add a=one; add b=two");
    cr_expect_eq(informer_count(inf), 2, "the refused object is not cached, the others are");
    const struct thing *a = informer_get_item(inf, "ns", "a");
    cr_assert_not_null(a);
    cr_expect_str_eq(a->value, "one");
    cr_expect_null(informer_get_item(inf, "ns", "bad"));
}

Test(informer_compact, watch_events_update_delete_and_skip_replays)
{
    struct http_request *w = list_ab();
    seen[0] = '\0';
    answer(w,
           "{\"type\":\"MODIFIED\",\"object\":" THING(
               "a", "ua", "2",
               "uno") "}\n"
                      "{\"type\":\"MODIFIED\",\"object\":" THING(
                          "a", "ua", "2",
                          "replayed") "}\n"
                                      "{\"type\":\"DELETED\",\"object\":" THING(
                                          "b", "ub", "3",
                                          "last") "}\n"
                                                  "{\"type\":\"ADDED\",\"object\":{\"metadata\":{"
                                                  "\"name\":\"bad\",\"namespace\":\"ns\","
                                                  "\"resourceVersion\":\"4\"},\"data\":{\"refuse\":"
                                                  "\"yes\"}}}\n",
           true);
    cr_expect_str_eq(seen, "update-from a=one; to a=uno; delete b=last",
                     "a replayed resourceVersion is no event; a deletion hands over its last "
                     "state; a refused object is not cached");
    cr_expect_eq(informer_count(inf), 1);
    cr_expect_str_eq(((const struct thing *)informer_get_item(inf, "ns", "a"))->value, "uno");
}

Test(informer_compact, a_relist_emits_only_the_differences)
{
    struct http_request *w = list_ab();
    seen[0] = '\0';
    answer(w, "{\"type\":\"ERROR\",\"object\":{\"code\":410,\"message\":\"too old\"}}\n", true);
    /* a unchanged, b recreated under its name (new uid), c new; nothing else */
    answer(pending("GET", "configmaps"),
           "{\"metadata\":{\"resourceVersion\":\"20\"},\"items\":[" THING(
               "a", "ua", "1", "one") "," THING("b", "ub2", "15",
                                                "new-b") "," THING("c", "uc", "16", "three") "]}",
           false);
    cr_expect(strstr(seen, "delete b=two; add b=new-b") != NULL, "%s", seen);
    cr_expect(strstr(seen, "add c=three") != NULL, "%s", seen);
    cr_expect(strstr(seen, " a=") == NULL && strncmp(seen, "add a", 5) != 0, "%s", seen);
    cr_expect_eq(informer_count(inf), 3);
}

/*
 * The informer's list and watch share the client (and its rate limit) with the controller's
 * writes, as in holdfast, where a fresh start with 10,000 ElastiServices queues ~20,000 writes
 * at 20/s: the Service and EndpointSlice caches never synced (bench/RESULTS.md 5b), so /readyz
 * stayed 503 for the ~1,000 s the writes took. Here 5/s, burst 1, 40 writes queued first: the
 * list and then the watch go ahead of them, each with a token of the same bucket.
 */
static void setup_limited(void)
{
    setup_with(5, 1, false);
}

static void write_done(cJSON *obj, const struct kube_error *err, void *arg) {}

/* The pending request whose "METHOD URL" contains a and b, waiting up to 3 s of the clock (the
 * limiter's timer hands out tokens meanwhile); NULL if none came. */
static struct http_request *pending_within_3s(const char *a, const char *b)
{
    for (int i = 0; i < 300; i++) {
        settle();
        struct http_request *r = fake_http_pick(b, strlen(b));
        if (r && strstr(fake_http_what(r), a) && strstr(fake_http_what(r), b))
            return r;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    return NULL;
}

TestSuite(informer_rate_limited, .init = setup_limited, .fini = teardown, .timeout = 30);

Test(informer_rate_limited, list_and_watch_go_ahead_of_a_write_backlog)
{
    static const struct kube_resource things = {"", "v1", "configmaps", true};
    cJSON *patch = cJSON_Parse("{\"data\":{\"value\":\"w\"}}");
    for (int i = 0; i < 40; i++) {
        char name[16];
        snprintf(name, sizeof(name), "w%d", i);
        cr_assert_not_null(kube_patch(client, &things, "ns", name, NULL, KUBE_PATCH_MERGE, patch,
                                      write_done, NULL));
    }
    cJSON_Delete(patch);
    cr_assert_eq(kube_client_queued(client), 39, "the burst (1) let one write through");
    cr_assert(kube_client_throttled_seconds(client) == 0, "no call waited for a token yet");
    informer_start(inf);
    struct http_request *list = pending_within_3s("GET", "limit=");
    cr_assert_not_null(list, "the list was never sent");
    cr_expect_geq(kube_client_queued(client), 30,
                  "the list went ahead of the writes: %zu of them still wait",
                  kube_client_queued(client));
    answer(
        list,
        "{\"metadata\":{\"resourceVersion\":\"10\"},\"items\":[" THING("a", "ua", "1", "one") "]}",
        false);
    cr_assert(synced, "the cache synced while %zu writes wait", kube_client_queued(client));
    cr_expect(kube_client_throttled_seconds(client) == 1.0 / 5,
              "the list waited for a token of the same bucket, and was answered: %f s",
              kube_client_throttled_seconds(client));
    struct http_request *watch = pending_within_3s("GET", "watch=true");
    cr_assert_not_null(watch, "the watch was never sent");
    cr_expect_geq(kube_client_queued(client), 28,
                  "the watch went ahead of the writes: %zu of them still wait",
                  kube_client_queued(client));
}

/* ---- handlers given the tree ---- */

TestSuite(informer_trees, .init = setup_trees, .fini = teardown, .timeout = 30);

Test(informer_trees, the_handlers_get_the_whole_object_and_the_cache_keeps_the_item)
{
    struct http_request *w = list_ab();
    cr_assert(synced);
    cr_expect_str_eq(seen, "add a=one other=dropped; add b=two other=dropped");
    cr_expect_eq(informer_count(inf), 2, "the refused object is not cached, the others are");
    cr_expect_str_eq(((const struct thing *)informer_get_item(inf, "ns", "a"))->value, "one");
    cr_expect_null(informer_get_item(inf, "ns", "bad"));
    seen[0] = '\0';
    answer(w,
           "{\"type\":\"MODIFIED\",\"object\":" THING(
               "a", "ua", "2", "uno") "}\n"
                                      "{\"type\":\"MODIFIED\",\"object\":" THING(
                                          "a", "ua", "2",
                                          "replayed") "}\n"
                                                      "{\"type\":\"DELETED\",\"object\":" THING(
                                                          "b", "ub", "3", "last") "}\n",
           true);
    cr_expect_str_eq(seen, "update-from a=one; to a=uno other=dropped; delete b=last",
                     "a replayed resourceVersion is no event; a deletion hands over its last "
                     "state");
    cr_expect_eq(informer_count(inf), 1);
    cr_expect_str_eq(((const struct thing *)informer_get_item(inf, "ns", "a"))->value, "uno");
}

Test(informer_trees, a_relist_hands_the_trees_of_the_differences_only)
{
    struct http_request *w = list_ab();
    seen[0] = '\0';
    answer(w, "{\"type\":\"ERROR\",\"object\":{\"code\":410,\"message\":\"too old\"}}\n", true);
    /* a unchanged, b recreated under its name (new uid), c new; nothing else */
    answer(pending("GET", "configmaps"),
           "{\"metadata\":{\"resourceVersion\":\"20\"},\"items\":[" THING(
               "a", "ua", "1", "one") "," THING("b", "ub2", "15",
                                                "new-b") "," THING("c", "uc", "16", "three") "]}",
           false);
    cr_expect(strstr(seen, "delete b=two; add b=new-b other=dropped") != NULL, "%s", seen);
    cr_expect(strstr(seen, "add c=three other=dropped") != NULL, "%s", seen);
    cr_expect(strstr(seen, " a=") == NULL && strncmp(seen, "add a", 5) != 0, "%s", seen);
    cr_expect_eq(informer_count(inf), 3);
}
