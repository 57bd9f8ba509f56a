/*
 * lean: the informers' transforms. Each prunes a decoded object in place, before the informer
 * stores it or hands it to a handler, so the caches keep only the fields holdfast reads (as
 * client-go's transform functions drop managedFields). What each keeps, and who reads it:
 *
 *   ElastiService  metadata: name, namespace, uid, resourceVersion (the informer, Events),
 *                  generation (spec parsing, observedGeneration), creationTimestamp,
 *                  deletionTimestamp, finalizers (finalizer handling); spec and status whole
 *                  (the spec is parsed whole; status.conditions are copied and written back
 *                  whole by every status write). Dropped: apiVersion, kind, managedFields,
 *                  labels, annotations (kubectl's last-applied-configuration),
 *                  ownerReferences. The handlers get what is left (the spec parsed when its
 *                  generation moved); the informer then keeps a struct es_cached
 *                  (controller/escached.h), not the tree.
 *   Service        metadata: name, namespace, uid (the resolver slices' owner),
 * resourceVersion; spec: type, clusterIP, ports (name, port, protocol, appProtocol,
 *                  targetPort). Dropped: everything else (status, selector, clusterIPs,
 *                  ipFamilies, ...).
 *                  The informer then decodes what is left into a struct service_cached
 *                  (controller/service.h) and keeps that, not the tree.
 *   EndpointSlice  metadata: name, namespace, uid, resourceVersion, and the labels
 *                  kubernetes.io/service-name and endpointslice.kubernetes.io/managed-by;
 *                  ports whole; endpoints: addresses, conditions, nodeName. A resolver slice
 *                  (managed by holdfast) keeps its endpoints whole: they are compared whole with
 *                  what holdfast would write. Dropped: apiVersion, kind, addressType,
 *                  managedFields, other labels, annotations, ownerReferences, the endpoints'
 *                  targetRef, zone, hints. The informer then decodes what is left into a
 *                  struct slice_cached (controller/slices.h) and keeps that, not the tree.
 *   workloads      metadata: name, namespace, uid, resourceVersion, generation;
 *                  spec.replicas, spec.selector (the pods leaving_check lists); status:
 *                  observedGeneration, readyReplicas, terminatingReplicas (whether the pods
 *                  listed when proxy mode began may stay).
 *   Pod            (early readiness's watch of a woken target's pods, early.c) metadata: name,
 *                  namespace, uid, resourceVersion, deletionTimestamp; spec: readinessGates,
 *                  containers (name, ports, readinessProbe, startupProbe); status: podIP,
 *                  conditions, containerStatuses (name, ready, started, restartCount, state).
 *
 * The cached objects are never written back: status writes are merge patches of the fields
 * holdfast sets, finalizer patches carry metadata.finalizers only, and resolver slices are
 * built afresh (or read afresh before an update).
 */
#ifndef HOLDFAST_LEAN_H
#define HOLDFAST_LEAN_H

#include <cjson/cJSON.h>

void lean_elastiservice(cJSON *obj);
void lean_service(cJSON *obj);
void lean_endpointslice(cJSON *obj);
void lean_workload(cJSON *obj);
void lean_pod(cJSON *obj);

#endif
