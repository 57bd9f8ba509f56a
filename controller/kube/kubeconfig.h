/*
 * kubeconfig: where the Kubernetes API is and how to authenticate to it.
 *
 * Two sources:
 *   - in-cluster: KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT, and the service account
 *     directory (default /var/run/secrets/kubernetes.io/serviceaccount) holding `token`,
 *     `ca.crt` and `namespace`. The token is a file that the kubelet rotates, so it is re-read
 *     whenever its mtime changes (checked at most once a second) and at least once a minute.
 *   - a kubeconfig file (`--kubeconfig FILE`, YAML read with libyaml): the current context (or
 *     a named one) gives the cluster (server, certificate-authority or
 *     certificate-authority-data, insecure-skip-tls-verify) and the user (token or tokenFile,
 *     client-certificate(-data) and client-key(-data)). Relative file paths are relative to the
 *     kubeconfig's directory, as kubectl does. `exec` plugins, `auth-provider` and basic auth
 *     (username/password) are not supported: loading fails with a message naming the field.
 *
 * Errors name the file and what is wrong with it ("FILE: users[kind].user.exec: exec
 * credential plugins are not supported"). Not thread-safe: one control thread.
 */
#ifndef HOLDFAST_KUBECONFIG_H
#define HOLDFAST_KUBECONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define KUBECONFIG_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

struct kubeconfig {
    char *source;     /* the kubeconfig path, or "in-cluster <dir>": for messages */
    char *server;     /* "https://host:port" without a trailing '/' */
    char *ca_file;    /* PEM CA file, or NULL (ca_data or the system store) */
    char *ca_data;    /* PEM CA bytes (decoded certificate-authority-data), or NULL */
    size_t ca_len;    /* bytes at ca_data */
    bool insecure;    /* insecure-skip-tls-verify: true; the client logs it at every start */
    char *cert_file;  /* client certificate file, or NULL */
    char *cert_data;  /* client certificate PEM bytes, or NULL */
    size_t cert_len;  /* bytes at cert_data */
    char *key_file;   /* client key file, or NULL */
    char *key_data;   /* client key PEM bytes, or NULL */
    size_t key_len;   /* bytes at key_data */
    char *token;      /* the bearer token in use (static, or last read from token_file) */
    char *token_file; /* file the token is read from and re-read when it changes, or NULL */
    char *namespace;  /* the context's namespace or the service account's, or NULL */
    struct timespec token_mtime; /* token_file's mtime when last read */
    time_t token_checked;        /* monotonic second of the last stat of token_file */
    time_t token_read;           /* monotonic second of the last read of token_file */
};

/* Loads `path`; `context` names the context to use, NULL for current-context. On success
 * returns 0 and *out (free with kubeconfig_free). On failure returns -1 and writes
 * "PATH: what is wrong" to err. */
int kubeconfig_load_file(const char *path, const char *context, struct kubeconfig **out, char *err,
                         size_t errlen);

/* Loads the in-cluster configuration from the environment and `sa_dir` (NULL: the default
 * KUBECONFIG_SA_DIR). The token and CA must be present; the namespace file is optional.
 * Returns 0 / -1 like kubeconfig_load_file. */
int kubeconfig_load_incluster(const char *sa_dir, struct kubeconfig **out, char *err,
                              size_t errlen);

/* The bearer token to send now, or NULL when the user has none (client certificates). When
 * token_file is set, it is re-read if its mtime changed (checked at most once a second) or a
 * minute has passed; if the re-read fails the last token is kept and the error logged. The
 * string is owned by kc and valid until the next call. */
const char *kubeconfig_token(struct kubeconfig *kc);

/* Decodes standard base64 (whitespace ignored). Returns a malloc'd buffer the caller frees,
 * NUL-terminated, with its length in *len; NULL when the input is not valid base64. */
char *kubeconfig_base64_decode(const char *in, size_t *len);

void kubeconfig_free(struct kubeconfig *kc);

#endif
