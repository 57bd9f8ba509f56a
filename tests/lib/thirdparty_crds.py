"""The parts of third-party CRDs holdfast's tests need on kubesim (standard library only).

ROLLOUT_CRD: Argo Rollouts' argoproj.io/v1alpha1 rollouts with the scale subresource.
SCALEDOBJECT_CRD: KEDA's keda.sh/v1alpha1 scaledobjects (namespaced; holdfast only patches its
annotations). Both keep unknown fields, as only their shape matters to the tests.
"""

ROLLOUT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "rollouts.argoproj.io"},
    "spec": {"group": "argoproj.io", "scope": "Namespaced",
             "names": {"plural": "rollouts", "singular": "rollout", "kind": "Rollout", "shortNames": ["ro"]},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                           "subresources": {"status": {}, "scale": {
                               "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.HPAReplicas",
                               "labelSelectorPath": ".status.selector"}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]}}

SCALEDOBJECT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {"group": "keda.sh", "scope": "Namespaced",
             "names": {"plural": "scaledobjects", "singular": "scaledobject", "kind": "ScaledObject",
                       "shortNames": ["so"]},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]}}
