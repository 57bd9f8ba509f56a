/*
 * kube_objects_fuzz: the pure readers of Kubernetes objects, one JSON document at a time:
 * /scale (target_scale_parse), scaleTargetRef (target_ref_parse), LabelSelectors
 * (target_label_selector), pods, workloads and events (target_pod_problem,
 * target_diagnose_objects), EndpointSlices (slices_ready_endpoints, slices_is_*, and the
 * controller's compact form of them, slices_decode, which must read the same), the resolver
 * slice built from a Service (slices_resolver_slice, names_fit), and an ElastiService's spec
 * triggers and probeResponse (prom_trigger_parse, probe_rules_parse).
 *
 * Input: one JSON value. Each reader gets the part of it it would be handed: the document
 * itself, and its spec.scaleTargetRef, spec.selector, items, pods, events, spec.ports,
 * spec.triggers and spec.probeResponse members when present. kube_api_fuzz feeds the same code
 * through the controller with whole API conversations; this target reaches it in one step.
 *
 * Checks: label selectors and names fit their buffers (names: 63 characters, no trailing '-');
 * ready endpoints carry a NUL-terminated IP (its syntax is checked where it is used, by
 * addr_parse); a diagnosis from valid UTF-8 input is valid UTF-8
 * (target.h promises messages cut at a character boundary).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "controller/prom.h"
#include "controller/service.h"
#include "controller/slices.h"
#include "controller/target.h"
#include "fuzz_util.h"
#include "resolver/probe.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_logging();
    return 0;
}

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL;
}

static const char *get_str(const cJSON *o, const char *k)
{
    const cJSON *v = get(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Strict UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t need;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            need = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + need >= n)
            return false;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += need + 1;
    }
    return true;
}

static void check_text(const char *what, const char *s, size_t cap, bool utf8_input)
{
    const char *nul = memchr(s, '\0', cap);
    if (!nul)
        fuzz_fail("%s is not NUL-terminated", what);
    if (utf8_input && !utf8_valid((const unsigned char *)s, (size_t)(nul - s)))
        fuzz_fail("%s is not valid UTF-8 though the input was: \"%s\"", what, s);
}

static void check_diagnosis(const struct target_diagnosis *d, bool utf8_input)
{
    check_text("diagnosis reason", d->reason, sizeof(d->reason), utf8_input);
    check_text("diagnosis message", d->message, sizeof(d->message), utf8_input);
    check_text("diagnosis object", d->object, sizeof(d->object), utf8_input);
    if (d->ready_pods > d->pods || d->pods < 0)
        fuzz_fail("diagnosis counts %d ready of %d pods", d->ready_pods, d->pods);
}

static void check_name(const char *base, const char *suffix)
{
    char out[K8S_NAME_MAX + 1];
    memset(out, 'x', sizeof(out));
    names_fit(out, sizeof(out), base, suffix, K8S_NAME_MAX);
    size_t n = strnlen(out, sizeof(out));
    if (n > K8S_NAME_MAX || (n && out[n - 1] == '-'))
        fuzz_fail("names_fit(\"%s\", \"%s\") gave \"%.*s\"", base, suffix, (int)n, out);
    char small[12];
    names_fit(small, sizeof(small), base, suffix, K8S_NAME_MAX);
    if (strnlen(small, sizeof(small)) >= sizeof(small))
        fuzz_fail("names_fit overran a small buffer");
}

/* The controller's compact form of the slice reads as the object does (slices_decode). */
static void same_as_decoded(const struct slice_cached *s, const cJSON *doc, const char *port,
                            const struct ready_endpoint *eps, size_t n)
{
    if (!s)
        return;
    struct ready_endpoint *got = NULL;
    size_t m = 0;
    if (slices_cached_ready_endpoints(s, port, &got, &m) < 0)
        fuzz_fail("slices_cached_ready_endpoints ran out of memory");
    if (m != n)
        fuzz_fail("port \"%s\": %zu ready endpoints decoded, %zu from the object", port, m, n);
    for (size_t k = 0; k < n; k++)
        if (strcmp(got[k].ip, eps[k].ip) != 0 || got[k].port != eps[k].port)
            fuzz_fail("port \"%s\": decoded endpoint %zu is %s:%u, the object's %s:%u", port, k,
                      got[k].ip, got[k].port, eps[k].ip, eps[k].port);
    free(got);
    (void)doc;
}

static void slices(const cJSON *doc)
{
    char err[256] = "";
    struct slice_cached *s = slices_decode(doc, err, sizeof(err));
    const cJSON *md = get(doc, "metadata");
    if (!s && get_str(md, "name") && get_str(md, "namespace"))
        fuzz_fail("a slice with a name and namespace was not decoded: %s", err);
    if (!s && strncmp(err, "EndpointSlice ", 14) != 0)
        fuzz_fail("a refused slice's error does not name it: %s", err);
    if (s && (slices_is_resolver_slice(doc) != (s->manager == SLICE_HOLDFAST) ||
              slices_is_controller_slice(doc) != (s->manager == SLICE_CONTROLLER)))
        fuzz_fail("the decoded slice's manager differs from its label");
    static const char *const fixed[] = {"", "http", "grpc"};
    for (size_t i = 0; i < 3; i++) {
        struct ready_endpoint *eps = NULL;
        size_t n = 0;
        if (slices_ready_endpoints(doc, fixed[i], &eps, &n) < 0)
            fuzz_fail("slices_ready_endpoints ran out of memory");
        for (size_t k = 0; k < n; k++)
            if (!memchr(eps[k].ip, '\0', sizeof(eps[k].ip)))
                fuzz_fail("a ready endpoint's IP is not NUL-terminated");
        same_as_decoded(s, doc, fixed[i], eps, n);
        free(eps);
    }
    const cJSON *p;
    cJSON_ArrayForEach(p, get(doc, "ports"))
    {
        const char *name = get_str(p, "name");
        if (!name)
            continue;
        struct ready_endpoint *eps = NULL;
        size_t n = 0;
        slices_ready_endpoints(doc, name, &eps, &n);
        same_as_decoded(s, doc, name, eps, n);
        free(eps);
    }
    slices_cached_free(s);
}

/* The doc as a Service: its resolver slices, one per family, from its own ports. */
static void resolver_slices(const cJSON *doc)
{
    /* the controller's compact form keeps every member of spec.ports, in order */
    char err[256] = "";
    struct service_cached *sc = service_decode(doc, err, sizeof(err));
    const cJSON *sports = get(get(doc, "spec"), "ports");
    if (sc && sc->n_ports != (size_t)cJSON_GetArraySize(sports))
        fuzz_fail("a decoded Service has %zu ports, the object %d", sc->n_ports,
                  cJSON_GetArraySize(sports));
    if (!sc && strncmp(err, "Service ", 8) != 0)
        fuzz_fail("a refused Service's error does not name it: %s", err);
    service_cached_free(sc);
    const cJSON *md = get(doc, "metadata");
    const char *name = get_str(md, "name"), *ns = get_str(md, "namespace");
    if (name && ns)
        check_name(name, ns);
    if (name)
        check_name(name, "holdfast-v6");
    struct slice_port ports[8];
    size_t n_ports = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, get(get(doc, "spec"), "ports"))
    {
        if (n_ports == 8)
            break;
        ports[n_ports] = (struct slice_port){
            .name = get_str(p, "name") ? get_str(p, "name") : "",
            .protocol = get_str(p, "protocol"),
            .app_protocol = get_str(p, "appProtocol"),
            .resolver_port = 20000 + (unsigned)n_ports,
        };
        n_ports++;
    }
    const struct resolver_endpoint eps[] = {{"10.0.0.7", "node-a"}, {"fd00::7", NULL}};
    for (int v6 = 0; v6 < 2; v6++) {
        cJSON *s = slices_resolver_slice(doc, v6 ? "IPv6" : "IPv4", eps, 2, ports, n_ports);
        if (!s)
            continue;
        const char *sname = get_str(get(s, "metadata"), "name");
        if (!sname || strlen(sname) > K8S_NAME_MAX || !slices_is_resolver_slice(s))
            fuzz_fail("a resolver slice with a bad name or labels");
        struct ready_endpoint *ready = NULL;
        size_t n = 0;
        slices_ready_endpoints(s, n_ports ? ports[0].name : "", &ready, &n);
        if (n_ports && n != 1)
            fuzz_fail("the resolver slice lists %zu ready endpoints of one family", n);
        free(ready);
        char *text = cJSON_PrintUnformatted(s);
        free(text);
        cJSON_Delete(s);
    }
}

static void targets(const cJSON *doc, bool utf8_input)
{
    struct target_scale scale;
    if (target_scale_parse(doc, &scale) == 0) {
        check_text("scale selector", scale.selector, sizeof(scale.selector), false);
        check_text("scale resourceVersion", scale.resource_version, sizeof(scale.resource_version),
                   false);
    }
    const cJSON *spec = get(doc, "spec");
    struct target_ref ref;
    char err[256];
    const cJSON *refs[] = {doc, get(spec, "scaleTargetRef")};
    for (size_t i = 0; i < 2; i++) {
        memset(err, 'x', sizeof(err));
        if (target_ref_parse(refs[i], &ref, err, sizeof(err)) == 0) {
            if (!ref.name[0] || strchr(ref.name, '/') || !target_kind_name(ref.kind))
                fuzz_fail("scaleTargetRef accepted with name \"%s\"", ref.name);
        } else if (!memchr(err, '\0', sizeof(err))) {
            fuzz_fail("target_ref_parse failed without a NUL-terminated message");
        }
    }
    char sel[1024];
    const cJSON *sels[] = {doc, get(spec, "selector")};
    for (size_t i = 0; i < 2; i++) {
        memset(sel, 'x', sizeof(sel));
        if (target_label_selector(sels[i], sel, sizeof(sel)) == 0 && !sel[0])
            fuzz_fail("an empty label selector was accepted");
        if (!memchr(sel, '\0', sizeof(sel)))
            fuzz_fail("target_label_selector left its buffer unterminated");
        char tiny[8];
        target_label_selector(sels[i], tiny, sizeof(tiny));
        if (!memchr(tiny, '\0', sizeof(tiny)))
            fuzz_fail("target_label_selector overran a small buffer");
    }

    struct target_diagnosis d;
    memset(&d, 0, sizeof(d));
    if (target_pod_problem(doc, &d))
        check_diagnosis(&d, utf8_input);
    const cJSON *item;
    cJSON_ArrayForEach(item, get(doc, "items"))
    {
        memset(&d, 0, sizeof(d));
        if (target_pod_problem(item, &d))
            check_diagnosis(&d, utf8_input);
    }
    const cJSON *pods = get(doc, "pods"), *events = get(doc, "events");
    target_diagnose_objects(doc, pods, events, &d);
    check_diagnosis(&d, utf8_input);
    target_diagnose_objects(doc, doc, doc, &d);
    check_diagnosis(&d, utf8_input);
    target_diagnose_objects(doc, NULL, NULL, &d);
    check_diagnosis(&d, utf8_input);
}

static void spec_parts(const cJSON *doc)
{
    const cJSON *spec = get(doc, "spec");
    const cJSON *t;
    char err[512];
    cJSON_ArrayForEach(t, get(spec, "triggers"))
    {
        struct prom_trigger pt;
        if (prom_trigger_parse(t, "spec.triggers[0]", NULL, NULL, &pt, err, sizeof(err)) == 0)
            prom_trigger_clear(&pt);
    }
    struct probe_rules *rules =
        probe_rules_parse(get(spec, "probeResponse"), "spec.probeResponse", err, sizeof(err));
    probe_rules_free(rules);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *doc = cJSON_ParseWithLength((const char *)data, size);
    if (!doc)
        return 0;
    bool utf8_input = utf8_valid(data, size);
    targets(doc, utf8_input);
    slices(doc);
    resolver_slices(doc);
    spec_parts(doc);
    cJSON_Delete(doc);
    return 0;
}
