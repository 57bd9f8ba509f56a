/*
 * kubeconfig_test: kubeconfig files written to a temporary directory (token, tokenFile, CA file
 * and data, client certificates, contexts) and the in-cluster service account directory (token
 * rotation); each unsupported or broken field is reported as "FILE: field: what is wrong".
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "controller/kube/kubeconfig.h"

static char dir[256];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/kubeconfig_test.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(kubeconfig, .init = make_dir, .fini = remove_dir);

/* Writes `text` to dir/name and returns the path (static buffer per call site is enough). */
static const char *write_file(const char *name, const char *text)
{
    static char paths[8][512];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 512, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* base64("-----BEGIN CERTIFICATE-----\nCA\n") etc. */
#define CA_PEM "-----BEGIN CERTIFICATE-----\nCA\n"
#define CA_B64 "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCkNBCg=="

static const char *one_context(const char *cluster_extra, const char *user_body)
{
    static char buf[4096];
    snprintf(buf, sizeof(buf),
             "apiVersion: v1\n"
             "kind: Config\n"
             "clusters:\n"
             "- name: other\n"
             "  cluster:\n"
             "    server: https://other.example:6443\n"
             "- name: sim\n"
             "  cluster:\n"
             "    server: https://127.0.0.1:6443/\n"
             "%s"
             "users:\n"
             "- name: admin\n"
             "  user:\n"
             "%s"
             "contexts:\n"
             "- name: main\n"
             "  context: {cluster: sim, user: admin, namespace: demo}\n"
             "- name: second\n"
             "  context: {cluster: other, user: admin}\n"
             "current-context: main\n",
             cluster_extra, user_body);
    return buf;
}

static struct kubeconfig *load_ok(const char *text, const char *context)
{
    const char *path = write_file("config", text);
    struct kubeconfig *kc = NULL;
    char err[1024] = "";
    int rc = kubeconfig_load_file(path, context, &kc, err, sizeof(err));
    cr_assert_eq(rc, 0, "rejected: %s", err);
    cr_assert_not_null(kc);
    return kc;
}

static const char *load_err(const char *text)
{
    static char err[1024];
    const char *path = write_file("config", text);
    struct kubeconfig *kc = NULL;
    err[0] = '\0';
    int rc = kubeconfig_load_file(path, NULL, &kc, err, sizeof(err));
    cr_assert_eq(rc, -1, "accepted");
    cr_assert_null(kc);
    cr_assert(strstr(err, path) == err, "the message does not start with the file: %s", err);
    return err;
}

Test(kubeconfig, token_and_ca_data)
{
    struct kubeconfig *kc = load_ok(
        one_context("    certificate-authority-data: " CA_B64 "\n", "    token: abc123\n"), NULL);
    cr_assert_str_eq(kc->server, "https://127.0.0.1:6443");
    cr_assert_eq(kc->ca_len, strlen(CA_PEM));
    cr_assert(memcmp(kc->ca_data, CA_PEM, kc->ca_len) == 0);
    cr_assert_null(kc->ca_file);
    cr_assert_str_eq(kubeconfig_token(kc), "abc123");
    cr_assert_str_eq(kc->namespace, "demo");
    cr_assert_not(kc->insecure);
    kubeconfig_free(kc);
}

Test(kubeconfig, named_context_overrides_current)
{
    struct kubeconfig *kc = load_ok(one_context("", "    token: t\n"), "second");
    cr_assert_str_eq(kc->server, "https://other.example:6443");
    cr_assert_null(kc->namespace);
    kubeconfig_free(kc);
}

Test(kubeconfig, relative_ca_file_and_client_cert_files)
{
    write_file("ca.pem", CA_PEM);
    write_file("client.crt", "CERT");
    write_file("client.key", "KEY");
    struct kubeconfig *kc = load_ok(one_context("    certificate-authority: ca.pem\n",
                                                "    client-certificate: client.crt\n"
                                                "    client-key: client.key\n"),
                                    NULL);
    char want[600];
    snprintf(want, sizeof(want), "%s/ca.pem", dir);
    cr_assert_str_eq(kc->ca_file, want);
    snprintf(want, sizeof(want), "%s/client.crt", dir);
    cr_assert_str_eq(kc->cert_file, want);
    snprintf(want, sizeof(want), "%s/client.key", dir);
    cr_assert_str_eq(kc->key_file, want);
    cr_assert_null(kubeconfig_token(kc));
    kubeconfig_free(kc);
}

Test(kubeconfig, client_cert_data)
{
    /* "CERT" and "KEY" */
    struct kubeconfig *kc = load_ok(one_context("", "    client-certificate-data: Q0VSVA==\n"
                                                    "    client-key-data: S0VZ\n"),
                                    NULL);
    cr_assert_eq(kc->cert_len, 4);
    cr_assert(memcmp(kc->cert_data, "CERT", 4) == 0);
    cr_assert_eq(kc->key_len, 3);
    cr_assert(memcmp(kc->key_data, "KEY", 3) == 0);
    kubeconfig_free(kc);
}

Test(kubeconfig, insecure_flag)
{
    struct kubeconfig *kc =
        load_ok(one_context("    insecure-skip-tls-verify: true\n", "    token: t\n"), NULL);
    cr_assert(kc->insecure);
    kubeconfig_free(kc);
}

Test(kubeconfig, token_file_is_reread_when_it_changes)
{
    const char *tok = write_file("token", "first\n");
    char user[700];
    snprintf(user, sizeof(user), "    tokenFile: %s\n", tok);
    struct kubeconfig *kc = load_ok(one_context("", user), NULL);
    cr_assert_str_eq(kubeconfig_token(kc), "first");
    write_file("token", "second\n");
    /* Same second: the cached token is served without a stat. */
    kc->token_checked = 0;
    struct stat st;
    cr_assert_eq(stat(tok, &st), 0);
    kc->token_mtime.tv_sec = st.st_mtim.tv_sec - 5; /* as if written long ago */
    cr_assert_str_eq(kubeconfig_token(kc), "second");
    kubeconfig_free(kc);
}

Test(kubeconfig, exec_plugin_is_refused_by_name)
{
    const char *err = load_err(one_context("", "    exec:\n      command: aws\n"));
    cr_assert(strstr(err, "users[admin].user.exec: exec credential plugins are not supported"),
              "%s", err);
}

Test(kubeconfig, auth_provider_is_refused_by_name)
{
    const char *err = load_err(one_context("", "    auth-provider:\n      name: gcp\n"));
    cr_assert(strstr(err, "users[admin].user.auth-provider:"), "%s", err);
}

Test(kubeconfig, basic_auth_is_refused)
{
    const char *err = load_err(one_context("", "    username: u\n    password: p\n"));
    cr_assert(strstr(err, "basic authentication is not supported"), "%s", err);
}

Test(kubeconfig, bad_base64)
{
    const char *err =
        load_err(one_context("    certificate-authority-data: '!!notbase64'\n", "    token: t\n"));
    cr_assert(strstr(err, "clusters[sim].cluster.certificate-authority-data: not valid base64"),
              "%s", err);
}

Test(kubeconfig, missing_ca_file)
{
    const char *err =
        load_err(one_context("    certificate-authority: nope.pem\n", "    token: t\n"));
    cr_assert(strstr(err, "clusters[sim].cluster.certificate-authority: cannot read"), "%s", err);
    cr_assert(strstr(err, "nope.pem"), "%s", err);
}

Test(kubeconfig, cert_without_key)
{
    const char *err = load_err(one_context("", "    client-certificate-data: Q0VSVA==\n"));
    cr_assert(strstr(err, "client-certificate without client-key"), "%s", err);
}

Test(kubeconfig, missing_server)
{
    const char *err = load_err("clusters:\n- name: c\n  cluster: {certificate-authority-data: "
                               "Q0E=}\ncontexts:\n- name: x\n  context: {cluster: c}\n"
                               "current-context: x\n");
    cr_assert(strstr(err, "clusters[c].cluster.server: missing"), "%s", err);
}

Test(kubeconfig, unknown_names)
{
    const char *err = load_err("clusters: []\ncontexts:\n- name: x\n  context: {cluster: c}\n"
                               "current-context: x\n");
    cr_assert(strstr(err, "clusters: no cluster named \"c\""), "%s", err);
    err = load_err("contexts: []\ncurrent-context: x\n");
    cr_assert(strstr(err, "contexts: no context named \"x\""), "%s", err);
    err = load_err("contexts: []\n");
    cr_assert(strstr(err, "current-context: not set"), "%s", err);
    err = load_err("clusters:\n- name: c\n  cluster: {server: 'ftp://x'}\ncontexts:\n"
                   "- name: x\n  context: {cluster: c}\ncurrent-context: x\n");
    cr_assert(strstr(err, "is not an http(s):// URL"), "%s", err);
}

Test(kubeconfig, yaml_syntax_error_names_the_line)
{
    const char *err = load_err("clusters:\n- name: [unclosed\n");
    cr_assert(strstr(err, "YAML error"), "%s", err);
}

Test(kubeconfig, missing_file)
{
    struct kubeconfig *kc = NULL;
    char err[512];
    cr_assert_eq(kubeconfig_load_file("/nonexistent/kubeconfig", NULL, &kc, err, sizeof(err)), -1);
    cr_assert(strstr(err, "/nonexistent/kubeconfig: cannot read"), "%s", err);
}

Test(kubeconfig, in_cluster)
{
    write_file("token", "sa-token\n");
    write_file("ca.crt", CA_PEM);
    write_file("namespace", "holdfast-system\n");
    setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    struct kubeconfig *kc = NULL;
    char err[512] = "";
    cr_assert_eq(kubeconfig_load_incluster(dir, &kc, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(kc->server, "https://10.0.0.1:443");
    cr_assert_str_eq(kubeconfig_token(kc), "sa-token");
    cr_assert_str_eq(kc->namespace, "holdfast-system");
    char want[600];
    snprintf(want, sizeof(want), "%s/ca.crt", dir);
    cr_assert_str_eq(kc->ca_file, want);

    /* Rotation: the kubelet replaces the file; the next check picks it up. */
    write_file("token", "rotated\n");
    kc->token_checked = 0;
    kc->token_mtime.tv_nsec ^= 1;
    cr_assert_str_eq(kubeconfig_token(kc), "rotated");
    kubeconfig_free(kc);

    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    cr_assert_eq(kubeconfig_load_incluster(dir, &kc, err, sizeof(err)), 0, "%s", err);
    cr_assert_str_eq(kc->server, "https://[fd00::1]:443");
    kubeconfig_free(kc);
}

Test(kubeconfig, in_cluster_errors)
{
    struct kubeconfig *kc = NULL;
    char err[512] = "";
    unsetenv("KUBERNETES_SERVICE_HOST");
    cr_assert_eq(kubeconfig_load_incluster(dir, &kc, err, sizeof(err)), -1);
    cr_assert(strstr(err, "KUBERNETES_SERVICE_HOST"), "%s", err);
    setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    cr_assert_eq(kubeconfig_load_incluster(dir, &kc, err, sizeof(err)), -1);
    cr_assert(strstr(err, "service account token"), "%s", err);
    cr_assert(strstr(err, dir), "%s", err);
}

Test(kubeconfig, base64)
{
    size_t n = 0;
    char *s = kubeconfig_base64_decode("aGVs\nbG8=", &n);
    cr_assert_not_null(s);
    cr_assert_eq(n, 5);
    cr_assert_str_eq(s, "hello");
    free(s);
    cr_assert_null(kubeconfig_base64_decode("a$b=", &n));
    cr_assert_null(kubeconfig_base64_decode("aGVsbG8=x", &n));
}
