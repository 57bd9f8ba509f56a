/*
 * config_fuzz: the standalone configuration file (resolver/config.c), from its text.
 *
 * Input: the file's bytes. Like config_load, a text with a NUL byte is refused before
 * parsing. Checks: every error is one NUL-terminated message starting with the source name;
 * every accepted config has what config.h promises (a name, at least one listen address and
 * one backend, rules, limits within their ranges).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "standalone/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init_logging();
    return 0;
}

static void check(const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_services; i++) {
        const struct config_service *s = &cfg->services[i];
        if (!s->name || !s->namespace_ || s->n_listen == 0 || !s->listen || s->n_backends == 0 ||
            !s->backends || !s->probes)
            fuzz_fail("services[%zu] accepted incomplete", i);
        if (s->readiness == READINESS_HTTP_GET && !s->readiness_path)
            fuzz_fail("services[%zu]: httpGet readiness without a path", i);
        if (s->hold_timeout_s == 0 || s->max_held_connections == 0 || s->max_held_bytes == 0)
            fuzz_fail("services[%zu]: a limit of 0 was accepted", i);
        for (char **a = s->wake_argv; a && *a; a++)
            if (strlen(*a) > 1u << 20)
                fuzz_fail("services[%zu]: absurd wake argument", i);
    }
    const struct dp_limits *l = &cfg->limits;
    if (l->max_head_bytes < 1024 || l->hold_buffer_bytes < 1024 || l->head_timeout_s == 0 ||
        l->connect_timeout_ms == 0)
        fuzz_fail("limits out of range were accepted");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (memchr(data, '\0', size))
        return 0;
    char *text = fuzz_strndup(data, size);
    struct config *cfg = NULL;
    char err[300];
    memset(err, 'x', sizeof(err));
    int rc = config_parse(text, "fuzz.json", &cfg, err, sizeof(err));
    if (rc == 0) {
        if (!cfg)
            fuzz_fail("config_parse succeeded without a config");
        check(cfg);
    } else {
        if (cfg)
            fuzz_fail("config_parse failed but returned a config");
        if (!memchr(err, '\0', sizeof(err)) || strncmp(err, "fuzz.json: ", 11) != 0)
            fuzz_fail("config_parse failed without a proper message");
    }
    config_free(cfg);
    free(text);
    return 0;
}
