/*
 * kubeconfig_fuzz: kubeconfig files (controller/kubeconfig.c), loaded from a file as holdfast
 * loads them, and its base64 decoder.
 *
 * Input: the kubeconfig's YAML. A first line "# context=NAME" (a YAML comment) selects a context
 * instead of current-context. Each run writes the input to FUZZ_DIR/config, in a private
 * temporary directory that also holds files a kubeconfig may name relatively: token, ca.crt,
 * client.crt, client.key.
 *
 * The loader may open any path a kubeconfig names. While it runs, fopen is confined to the
 * temporary directory (the link wraps fopen, see meson.build): a fuzzed "tokenFile: /dev/stdin"
 * must not block the run or read the machine's files. Outside the loader, libFuzzer's own
 * fopen calls (crash files) go through untouched.
 *
 * Checks: a loaded config has a server URL without a trailing '/' and consistent lengths for the
 * data it decoded; a failure comes with a NUL-terminated message naming the file.
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "controller/kube/kubeconfig.h"
#include "fuzz_util.h"

static char dir[PATH_MAX];
static char config_path[PATH_MAX];
static bool confined;

FILE *__real_fopen(const char *path, const char *mode);
FILE *__wrap_fopen(const char *path, const char *mode);

/* fopen, but while `confined` only for files inside `dir`. */
FILE *__wrap_fopen(const char *path, const char *mode)
{
    if (!confined)
        return __real_fopen(path, mode);
    char real[PATH_MAX];
    if (!realpath(path, real))
        return NULL; /* errno from realpath: ENOENT and the like */
    size_t n = strlen(dir);
    if (strncmp(real, dir, n) != 0 || real[n] != '/') {
        errno = EACCES;
        return NULL;
    }
    return __real_fopen(real, mode);
}

static void write_file(const char *name, const void *data, size_t len)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = __real_fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
        fuzz_fail("cannot write %s: %s", path, strerror(errno));
}

static void cleanup(void)
{
    static const char *const names[] = {"config", "token", "ca.crt", "client.crt", "client.key"};
    char path[PATH_MAX];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_logging();
    char tmpl[] = "/tmp/holdfast-kubeconfig-fuzz.XXXXXX";
    if (!mkdtemp(tmpl) || !realpath(tmpl, dir))
        fuzz_fail("cannot make a temporary directory: %s", strerror(errno));
    atexit(cleanup);
    snprintf(config_path, sizeof(config_path), "%s/config", dir);
    static const char pem[] = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    write_file("token", "fuzz-token\n", 11);
    write_file("ca.crt", pem, sizeof(pem) - 1);
    write_file("client.crt", pem, sizeof(pem) - 1);
    write_file("client.key", "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n", 58);
    return 0;
}

static void check(const struct kubeconfig *kc)
{
    size_t n = strlen(kc->server);
    if (n && kc->server[n - 1] == '/')
        fuzz_fail("server keeps a trailing '/': %s", kc->server);
    if ((kc->ca_data && !kc->ca_len) || (kc->cert_data && !kc->cert_len) ||
        (kc->key_data && !kc->key_len))
        fuzz_fail("decoded data of length 0 was accepted");
    if (kc->ca_data && kc->ca_data[kc->ca_len] != '\0')
        fuzz_fail("decoded CA data is not NUL-terminated");
    if (!kc->source)
        fuzz_fail("no source recorded");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *context = NULL;
    static const char prefix[] = "# context=";
    if (size > sizeof(prefix) - 1 && memcmp(data, prefix, sizeof(prefix) - 1) == 0) {
        const uint8_t *start = data + sizeof(prefix) - 1;
        const uint8_t *nl = memchr(start, '\n', size - (sizeof(prefix) - 1));
        context = fuzz_strndup(start, nl ? (size_t)(nl - start) : size - (sizeof(prefix) - 1));
    }
    write_file("config", data, size);

    struct kubeconfig *kc = NULL;
    char err[300];
    memset(err, 'x', sizeof(err));
    confined = true;
    int rc = kubeconfig_load_file(config_path, context, &kc, err, sizeof(err));
    if (rc == 0) {
        check(kc);
        kubeconfig_token(kc);
    }
    confined = false;
    if (rc != 0 && (kc || !memchr(err, '\0', sizeof(err)) || strncmp(err, dir, strlen(dir)) != 0))
        fuzz_fail("kubeconfig_load_file failed without a proper message");
    kubeconfig_free(kc);

    /* The decoder on the raw input, as certificate-authority-data reaches it. */
    char *text = fuzz_strndup(data, size);
    size_t len = 0;
    char *decoded = kubeconfig_base64_decode(text, &len);
    if (decoded && (len > size || decoded[len] != '\0'))
        fuzz_fail("base64 decoding gave %zu bytes from %zu", len, size);
    free(decoded);
    free(text);
    free(context);
    return 0;
}
