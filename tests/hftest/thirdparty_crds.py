"""The parts of third-party CRDs holdfast's tests apply themselves (standard library only).

SCALEDOBJECT_CRD: KEDA's keda.sh/v1alpha1 scaledobjects (namespaced; holdfast only patches its
annotations; KEDA itself does not run on the test cluster). It keeps unknown fields, as only its
shape matters to the tests. (Argo Rollouts' CRDs come with the upstream controller the test
cluster starts: tests/hftest/realcluster.py, start_rollouts.)
"""

SCALEDOBJECT_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "scaledobjects.keda.sh"},
    "spec": {"group": "keda.sh", "scope": "Namespaced",
             "names": {"plural": "scaledobjects", "singular": "scaledobject", "kind": "ScaledObject",
                       "shortNames": ["so"]},
             "versions": [{"name": "v1alpha1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object",
                                                          "x-kubernetes-preserve-unknown-fields": True}}}]}}
