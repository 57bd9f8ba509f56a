/*
 * defaults: the Kubernetes control plane's settings when nothing sets them, defined once. The
 * command line (process/flags.c) shows and applies them; the controller falls back on them for
 * a zero field of struct controller_opts. Plain numbers, so the flag table can show them.
 */
#ifndef HOLDFAST_CONTROLLER_DEFAULTS_H
#define HOLDFAST_CONTROLLER_DEFAULTS_H

#include "controller/kube/kube.h"
#include "controller/prom.h"

#define CONTROLLER_DEFAULT_BIND_ADDRESS "0.0.0.0"
#define CONTROLLER_DEFAULT_PORT_MIN 20000 /* the resolver port range, inclusive */
#define CONTROLLER_DEFAULT_PORT_MAX 29999
#define CONTROLLER_DEFAULT_SHARED_PORT 8012 /* Host-routed shared port; 0 = none */
#define CONTROLLER_DEFAULT_POLLING_INTERVAL_MS 30000
#define CONTROLLER_DEFAULT_API_QPS KUBE_DEFAULT_QPS
#define CONTROLLER_DEFAULT_API_BURST KUBE_DEFAULT_BURST
#define CONTROLLER_DEFAULT_API_TIMEOUT_MS KUBE_DEFAULT_TIMEOUT_MS
#define CONTROLLER_DEFAULT_PROMETHEUS_MAX_INFLIGHT PROM_DEFAULT_MAX_INFLIGHT
#define CONTROLLER_DEFAULT_SCALE_DOWN_PROBE_TIMEOUT_MS 30000
/* kube-proxy's 1 s minimum sync period, watch latency, a loaded node */
#define CONTROLLER_DEFAULT_SCALE_DOWN_GRACE_MS 5000
#define CONTROLLER_DEFAULT_LEASE_NAME "holdfast-leader"
#define CONTROLLER_USER_AGENT "holdfast/" HOLDFAST_VERSION /* of every API request */

#endif
