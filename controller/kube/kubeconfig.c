/*
 * kubeconfig: in-cluster configuration and kubeconfig files. See kubeconfig.h.
 *
 * The file is loaded with libyaml's document API (a node tree) and walked by key; every error
 * carries the path of the offending field, e.g. "clusters[prod].cluster.server".
 */
#include "controller/kube/kubeconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/xalloc.h"

/* Token, CA and key files are small; anything bigger is a mistake, not a credential. */
#define KC_MAX_FILE (1u << 20)

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t errlen, const char *fmt,
                                                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* Reads a whole (small) file. Returns a malloc'd NUL-terminated buffer, or NULL with errno. */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(KC_MAX_FILE + 1);
    size_t n = buf ? fread(buf, 1, KC_MAX_FILE + 1, f) : 0;
    int ferr = ferror(f);
    fclose(f);
    if (!buf || ferr || n > KC_MAX_FILE) {
        free(buf);
        errno = ferr ? EIO : (buf ? EFBIG : ENOMEM);
        return NULL;
    }
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

/* Strips trailing whitespace (a token file usually ends with '\n'). */
static void rtrim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
}

char *kubeconfig_base64_decode(const char *in, size_t *len)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(in);
    char *out = malloc(n / 4 * 3 + 4);
    if (!out)
        return NULL;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0, pad = 0;
    for (const char *p = in; *p; p++) {
        if (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
            continue;
        if (*p == '=') {
            pad++;
            continue;
        }
        const char *q = strchr(alphabet, *p);
        if (!q || pad) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)(q - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((acc >> bits) & 0xff);
        }
    }
    if (pad > 2 || bits >= 6) {
        free(out);
        return NULL;
    }
    out[o] = '\0';
    *len = o;
    return out;
}

void kubeconfig_free(struct kubeconfig *kc)
{
    if (!kc)
        return;
    free(kc->source);
    free(kc->server);
    free(kc->ca_file);
    free(kc->ca_data);
    free(kc->cert_file);
    free(kc->cert_data);
    free(kc->key_file);
    free(kc->key_data);
    free(kc->token);
    free(kc->token_file);
    free(kc->namespace);
    free(kc);
}

/* Reads token_file into kc->token. Returns 0, or -1 with errno. */
static int read_token(struct kubeconfig *kc)
{
    struct stat st;
    if (stat(kc->token_file, &st) != 0)
        return -1;
    char *tok = read_file(kc->token_file, NULL);
    if (!tok)
        return -1;
    rtrim(tok);
    free(kc->token);
    kc->token = tok;
    kc->token_mtime = st.st_mtim;
    kc->token_read = kc->token_checked = (time_t)(clock_mono_ms() / 1000);
    return 0;
}

const char *kubeconfig_token(struct kubeconfig *kc)
{
    if (!kc->token_file)
        return kc->token;
    time_t now = (time_t)(clock_mono_ms() / 1000);
    if (now == kc->token_checked)
        return kc->token;
    kc->token_checked = now;
    struct stat st;
    bool changed =
        stat(kc->token_file, &st) == 0 && (st.st_mtim.tv_sec != kc->token_mtime.tv_sec ||
                                           st.st_mtim.tv_nsec != kc->token_mtime.tv_nsec);
    if (changed || now - kc->token_read >= 60) {
        if (read_token(kc) != 0)
            log_warn("cannot re-read the bearer token file, keeping the previous token",
                     "file=%s error=%s", kc->token_file, strerror(errno));
    }
    return kc->token;
}

/* ---- in-cluster ---- */

int kubeconfig_load_incluster(const char *sa_dir, struct kubeconfig **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!sa_dir)
        sa_dir = KUBECONFIG_SA_DIR;
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host || !port || !*port) {
        set_err(err, errlen,
                "in-cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set "
                "(not running in a pod? use --kubeconfig)");
        return -1;
    }
    struct kubeconfig *kc = xcalloc(1, sizeof(*kc));
    bool v6 = strchr(host, ':') != NULL;
    if (asprintf(&kc->source, "in-cluster %s", sa_dir) < 0 ||
        asprintf(&kc->server, v6 ? "https://[%s]:%s" : "https://%s:%s", host, port) < 0 ||
        asprintf(&kc->token_file, "%s/token", sa_dir) < 0 ||
        asprintf(&kc->ca_file, "%s/ca.crt", sa_dir) < 0) {
        set_err(err, errlen, "in-cluster: out of memory");
        kubeconfig_free(kc);
        return -1;
    }
    if (read_token(kc) != 0) {
        set_err(err, errlen, "in-cluster: cannot read the service account token %s: %s",
                kc->token_file, strerror(errno));
        kubeconfig_free(kc);
        return -1;
    }
    char *ca = read_file(kc->ca_file, NULL);
    if (!ca) {
        set_err(err, errlen, "in-cluster: cannot read the cluster CA %s: %s", kc->ca_file,
                strerror(errno));
        kubeconfig_free(kc);
        return -1;
    }
    free(ca);
    char *nspath = NULL;
    if (asprintf(&nspath, "%s/namespace", sa_dir) >= 0) {
        kc->namespace = read_file(nspath, NULL);
        if (kc->namespace)
            rtrim(kc->namespace);
        free(nspath);
    }
    *out = kc;
    return 0;
}

/* ---- kubeconfig files ---- */

/* The walk over one loaded file: where errors go and how paths resolve. */
struct kc_load {
    const char *path; /* the kubeconfig file, for messages */
    char *dir;        /* its directory, for relative paths */
    yaml_document_t doc;
    char *err;
    size_t errlen;
};

static yaml_node_t *map_get(struct kc_load *l, yaml_node_t *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = yaml_document_get_node(&l->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && strcmp((char *)k->data.scalar.value, key) == 0)
            return yaml_document_get_node(&l->doc, p->value);
    }
    return NULL;
}

/* The scalar at map[key]; NULL when absent or empty. Sets *bad when present but not a scalar. */
static const char *map_str(struct kc_load *l, yaml_node_t *map, const char *key, bool *bad)
{
    yaml_node_t *n = map_get(l, map, key);
    if (!n)
        return NULL;
    if (n->type != YAML_SCALAR_NODE) {
        *bad = true;
        return NULL;
    }
    const char *s = (const char *)n->data.scalar.value;
    return *s ? s : NULL;
}

/* The entry of a named list (clusters, contexts, users) called `name`: its `field` member. */
static yaml_node_t *named_entry(struct kc_load *l, yaml_node_t *root, const char *list,
                                const char *name, const char *field)
{
    yaml_node_t *seq = map_get(l, root, list);
    if (!seq || seq->type != YAML_SEQUENCE_NODE)
        return NULL;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(&l->doc, *it);
        bool bad = false;
        const char *n = map_str(l, e, "name", &bad);
        if (n && strcmp(n, name) == 0) {
            yaml_node_t *f = map_get(l, e, field);
            return f ? f : e; /* an entry without its body still "exists" */
        }
    }
    return NULL;
}

static char *resolve_path(struct kc_load *l, const char *p)
{
    char *out = NULL;
    if (p[0] == '/' || !l->dir)
        return strdup(p);
    if (asprintf(&out, "%s/%s", l->dir, p) < 0)
        return NULL;
    return out;
}

/* A file field: resolved against the kubeconfig's directory and checked readable. */
static int file_field(struct kc_load *l, const char *field, const char *value, char **out)
{
    *out = resolve_path(l, value);
    if (!*out) {
        set_err(l->err, l->errlen, "%s: out of memory", l->path);
        return -1;
    }
    FILE *f = fopen(*out, "rb");
    if (!f) {
        set_err(l->err, l->errlen, "%s: %s: cannot read %s: %s", l->path, field, *out,
                strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

/* A *-data field: base64 of PEM. */
static int data_field(struct kc_load *l, const char *field, const char *value, char **out,
                      size_t *len)
{
    *out = kubeconfig_base64_decode(value, len);
    if (!*out || *len == 0) {
        set_err(l->err, l->errlen, "%s: %s: not valid base64", l->path, field);
        return -1;
    }
    return 0;
}

static int parse_bool(const char *s, bool *out)
{
    if (!strcasecmp(s, "true") || !strcasecmp(s, "yes") || !strcasecmp(s, "on")) {
        *out = true;
        return 0;
    }
    if (!strcasecmp(s, "false") || !strcasecmp(s, "no") || !strcasecmp(s, "off")) {
        *out = false;
        return 0;
    }
    return -1;
}

static int load_cluster(struct kc_load *l, yaml_node_t *root, const char *name,
                        struct kubeconfig *kc)
{
    yaml_node_t *c = named_entry(l, root, "clusters", name, "cluster");
    if (!c) {
        set_err(l->err, l->errlen, "%s: clusters: no cluster named \"%s\"", l->path, name);
        return -1;
    }
    char field[512];
    bool bad = false;
    const char *server = map_str(l, c, "server", &bad);
    snprintf(field, sizeof(field), "clusters[%s].cluster.server", name);
    if (!server) {
        set_err(l->err, l->errlen, "%s: %s: missing", l->path, field);
        return -1;
    }
    if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0) {
        set_err(l->err, l->errlen, "%s: %s: \"%s\" is not an http(s):// URL", l->path, field,
                server);
        return -1;
    }
    kc->server = strdup(server);
    size_t n = strlen(kc->server);
    while (n > 0 && kc->server[n - 1] == '/')
        kc->server[--n] = '\0';

    const char *v = map_str(l, c, "certificate-authority-data", &bad);
    snprintf(field, sizeof(field), "clusters[%s].cluster.certificate-authority-data", name);
    if (v && data_field(l, field, v, &kc->ca_data, &kc->ca_len) != 0)
        return -1;
    v = map_str(l, c, "certificate-authority", &bad);
    snprintf(field, sizeof(field), "clusters[%s].cluster.certificate-authority", name);
    if (v && !kc->ca_data && file_field(l, field, v, &kc->ca_file) != 0)
        return -1;
    v = map_str(l, c, "insecure-skip-tls-verify", &bad);
    snprintf(field, sizeof(field), "clusters[%s].cluster.insecure-skip-tls-verify", name);
    if (v && parse_bool(v, &kc->insecure) != 0) {
        set_err(l->err, l->errlen, "%s: %s: \"%s\" is not a boolean", l->path, field, v);
        return -1;
    }
    if (bad) {
        set_err(l->err, l->errlen, "%s: clusters[%s].cluster: a field that must be a string is not",
                l->path, name);
        return -1;
    }
    return 0;
}

static int load_user(struct kc_load *l, yaml_node_t *root, const char *name, struct kubeconfig *kc)
{
    yaml_node_t *u = named_entry(l, root, "users", name, "user");
    if (!u) {
        set_err(l->err, l->errlen, "%s: users: no user named \"%s\"", l->path, name);
        return -1;
    }
    static const struct {
        const char *key, *why;
    } unsupported[] = {
        {"exec", "exec credential plugins are not supported; use a token, tokenFile or a "
                 "client certificate"},
        {"auth-provider", "auth-provider plugins are not supported; use a token, tokenFile or "
                          "a client certificate"},
        {"username", "basic authentication is not supported"},
        {"password", "basic authentication is not supported"},
    };
    for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
        if (map_get(l, u, unsupported[i].key)) {
            set_err(l->err, l->errlen, "%s: users[%s].user.%s: %s", l->path, name,
                    unsupported[i].key, unsupported[i].why);
            return -1;
        }
    }
    char field[512];
    bool bad = false;
    const char *v = map_str(l, u, "token", &bad);
    if (v && !(kc->token = strdup(v)))
        goto oom;
    v = map_str(l, u, "tokenFile", &bad);
    snprintf(field, sizeof(field), "users[%s].user.tokenFile", name);
    if (v) {
        if (file_field(l, field, v, &kc->token_file) != 0)
            return -1;
        if (read_token(kc) != 0) {
            set_err(l->err, l->errlen, "%s: %s: cannot read %s: %s", l->path, field, kc->token_file,
                    strerror(errno));
            return -1;
        }
    }
    v = map_str(l, u, "client-certificate-data", &bad);
    snprintf(field, sizeof(field), "users[%s].user.client-certificate-data", name);
    if (v && data_field(l, field, v, &kc->cert_data, &kc->cert_len) != 0)
        return -1;
    v = map_str(l, u, "client-certificate", &bad);
    snprintf(field, sizeof(field), "users[%s].user.client-certificate", name);
    if (v && !kc->cert_data && file_field(l, field, v, &kc->cert_file) != 0)
        return -1;
    v = map_str(l, u, "client-key-data", &bad);
    snprintf(field, sizeof(field), "users[%s].user.client-key-data", name);
    if (v && data_field(l, field, v, &kc->key_data, &kc->key_len) != 0)
        return -1;
    v = map_str(l, u, "client-key", &bad);
    snprintf(field, sizeof(field), "users[%s].user.client-key", name);
    if (v && !kc->key_data && file_field(l, field, v, &kc->key_file) != 0)
        return -1;
    bool has_cert = kc->cert_data || kc->cert_file, has_key = kc->key_data || kc->key_file;
    if (has_cert != has_key) {
        set_err(l->err, l->errlen, "%s: users[%s].user: %s without %s", l->path, name,
                has_cert ? "client-certificate" : "client-key",
                has_cert ? "client-key" : "client-certificate");
        return -1;
    }
    if (bad) {
        set_err(l->err, l->errlen, "%s: users[%s].user: a field that must be a string is not",
                l->path, name);
        return -1;
    }
    return 0;
oom:
    set_err(l->err, l->errlen, "%s: out of memory", l->path);
    return -1;
}

static int load_doc(struct kc_load *l, const char *context, struct kubeconfig *kc)
{
    yaml_node_t *root = yaml_document_get_root_node(&l->doc);
    if (!root || root->type != YAML_MAPPING_NODE) {
        set_err(l->err, l->errlen, "%s: not a kubeconfig (the document is not a mapping)", l->path);
        return -1;
    }
    bool bad = false;
    const char *ctx_name = context ? context : map_str(l, root, "current-context", &bad);
    if (!ctx_name) {
        set_err(l->err, l->errlen, "%s: current-context: not set, and no context was given",
                l->path);
        return -1;
    }
    yaml_node_t *ctx = named_entry(l, root, "contexts", ctx_name, "context");
    if (!ctx) {
        set_err(l->err, l->errlen, "%s: contexts: no context named \"%s\"", l->path, ctx_name);
        return -1;
    }
    const char *cluster = map_str(l, ctx, "cluster", &bad);
    const char *user = map_str(l, ctx, "user", &bad);
    const char *ns = map_str(l, ctx, "namespace", &bad);
    if (!cluster) {
        set_err(l->err, l->errlen, "%s: contexts[%s].context.cluster: missing", l->path, ctx_name);
        return -1;
    }
    if (ns && !(kc->namespace = strdup(ns))) {
        set_err(l->err, l->errlen, "%s: out of memory", l->path);
        return -1;
    }
    if (load_cluster(l, root, cluster, kc) != 0)
        return -1;
    if (user && load_user(l, root, user, kc) != 0)
        return -1;
    return 0;
}

int kubeconfig_load_file(const char *path, const char *context, struct kubeconfig **out, char *err,
                         size_t errlen)
{
    *out = NULL;
    size_t len = 0;
    char *text = read_file(path, &len);
    if (!text) {
        set_err(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    struct kc_load l = {.path = path, .err = err, .errlen = errlen};
    const char *slash = strrchr(path, '/');
    if (slash)
        l.dir = strndup(path, (size_t)(slash - path == 0 ? 1 : slash - path));

    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int rc = -1;
    struct kubeconfig *kc = NULL;
    if (!yaml_parser_load(&parser, &l.doc)) {
        set_err(err, errlen, "%s: line %zu: YAML error: %s", path, parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "unknown");
        goto out_parser;
    }
    kc = calloc(1, sizeof(*kc));
    if (!kc || !(kc->source = strdup(path))) {
        set_err(err, errlen, "%s: out of memory", path);
        goto out_doc;
    }
    if (load_doc(&l, context, kc) == 0) {
        *out = kc;
        kc = NULL;
        rc = 0;
    }
out_doc:
    yaml_document_delete(&l.doc);
out_parser:
    yaml_parser_delete(&parser);
    kubeconfig_free(kc);
    free(l.dir);
    free(text);
    return rc;
}
