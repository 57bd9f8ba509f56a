/*
 * flags: the command line of `holdfast run` (standalone and Kubernetes mode) and `holdfast
 * restore`, as one table in flags.c: each flag with its environment variable, its default and
 * its help. Parsing, the environment, the defaults and the usage text all come from that table.
 *
 * A value is taken from the flag, else from its environment variable (when it has one and the
 * variable is not empty), else from the default. A bad flag, variable or value prints one
 * message ("holdfast: --workers: "0" is not a number from 1 to 256") and the usage to stderr;
 * the caller exits EXIT_USAGE.
 */
#ifndef HOLDFAST_FLAGS_H
#define HOLDFAST_FLAGS_H

#include <stdbool.h>
#include <stdio.h>

#include "common/addr.h"
#include "common/log.h"
#include "controller/controller.h"
#include "controller/restore.h"

#define EXIT_USAGE 2

/* The admin endpoint's port when --admin-listen is not given: on --bind-address. */
#define ADMIN_DEFAULT_PORT 8013

/* Everything the command line sets. */
struct options {
    /* holdfast run, both modes */
    const char *config_file; /* standalone mode when set; else Kubernetes mode */
    int workers;             /* data-plane worker threads */
    struct addr admin;       /* the admin endpoint's address */
    bool admin_given;        /* --admin-listen was given (else bind_address:admin_port) */
    enum log_level log_level;
    unsigned drain_timeout_s;  /* listeners closed -> connections left are closed */
    unsigned shutdown_delay_s; /* SIGTERM -> listeners closed: still accepting meanwhile */
    bool pace_held;            /* released held connections are paced (resolver/pace.h) */
    /* holdfast run, Kubernetes mode */
    struct controller_opts k8s;
    unsigned admin_port; /* admin on bind_address:admin_port unless --admin-listen */
    char bind_address[64];
    /* holdfast restore */
    struct restore_opts restore;
    bool restore_all;
    enum log_level restore_log_level;
};

/* `holdfast run ...` (argv[0] is "run"): fills opt. Returns 0, or EXIT_USAGE after printing what
 * is wrong and the usage to stderr. --help prints the usage to stdout and exits 0. */
int flags_parse_run(int argc, char **argv, struct options *opt);

/* `holdfast restore ...` (argv[0] is "restore"): fills opt->restore and opt->restore_log_level.
 * Returns 0 or EXIT_USAGE, as flags_parse_run does. */
int flags_parse_restore(int argc, char **argv, struct options *opt);

/* The usage of every command and mode, generated from the table. */
void flags_usage(FILE *out);

#endif
