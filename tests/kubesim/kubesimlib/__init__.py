"""kubesim: an in-process Kubernetes cluster simulator (API server, controllers, kubelet,
kube-proxy) used to test holdfast on machines that cannot run Kubernetes.

Modules:
  errors      Kubernetes Status objects and the ApiError exception that carries them
  util        timestamps, names, deep copies, JSON helpers
  selectors   label and field selector parsing and matching
  registry    the resource types served (built-in and from CRDs) and discovery documents
  schema      CRD openAPIV3Schema pruning, defaulting and validation
  patch       JSON merge patch, JSON patch and strategic merge patch
  builtins    defaulting and validation of built-in kinds (Service, Deployment, ...)
  store       the object store: resourceVersions, history, watches, finalizers, admission
  tables      server-side printing (meta.k8s.io/v1 Table) for kubectl get
  apiserver   the HTTPS REST API (authn, authz, CRUD, watch, subresources)
  controllers workload controllers, garbage collector, namespaces, EndpointSlice controller
  kubelet     pod processes, readiness probes, graceful termination
  kubeproxy   ClusterIP listeners relaying TCP to ready endpoints
  control     the fault-injection control endpoint
"""
