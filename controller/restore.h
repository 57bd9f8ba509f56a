/*
 * restore: `holdfast restore --all | --namespace NS [NAME]` puts ElastiServices back in serve
 * mode: each target scaled from 0 to minTargetReplicas, KEDA resumed, holdfast's resolver
 * EndpointSlices deleted (the Service's traffic goes to its pods again), status.mode serve.
 * The Helm chart's pre-delete hook runs it (with `uninstall`), so uninstalling holdfast never
 * strands traffic nor leaves finalizers nobody will remove.
 *
 * It runs its own event loop to completion and reports what it could not restore.
 */
#ifndef HOLDFAST_RESTORE_H
#define HOLDFAST_RESTORE_H

#include <stdbool.h>
#include <stddef.h>

struct restore_opts {
    const char *kubeconfig; /* file, or NULL for in-cluster configuration */
    const char *namespace_; /* NULL with all: every namespace */
    const char *name;       /* one ElastiService (needs namespace_), or NULL for all */
    bool insecure_skip_tls_verify;
    unsigned timeout_s; /* give up after this long (default 120) */
    /* Uninstall: take the leader Lease first (so no replica reconciles meanwhile, nor adds
     * the finalizer back) and remove holdfast's finalizer from every restored ElastiService,
     * so deleting them, or their namespace, does not wait for a holdfast that is gone. */
    bool uninstall;
    const char *lease_name;      /* default "holdfast-leader" */
    const char *lease_namespace; /* default "default" */
};

/* Returns 0 when every selected ElastiService is back in serve mode, 1 when some could not be
 * (each named in the log), 2 on bad configuration (message in err). */
int restore_run(const struct restore_opts *opts, char *err, size_t errlen);

#endif
