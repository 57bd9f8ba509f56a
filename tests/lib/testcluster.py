"""testcluster: which cluster the Kubernetes integration tests run on, decided in one place.

    HOLDFAST_TEST_CLUSTER=kubesim (the default): tests/kubesim, the Python stand-in
    HOLDFAST_TEST_CLUSTER=real: the real control plane (tests/lib/realcluster.py: upstream
        etcd, kube-apiserver, controller-manager, scheduler, kube-proxy, with the node agent);
        needs root, and runs the test process's main thread inside the cluster's namespace

    s = new_cluster(state_dir, image_map=IMAGES, proxy_delay_ms=200)
    s.start(); ...; leftovers = s.stop()       # the same calls on either

    start_rollouts(s)                          # a Rollout controller: kubesim's, or upstream's

    @kubesim_only("why the real cluster cannot do what this test needs")
    def test_...

A test that needs a kubesim fault without a real equivalent is marked kubesim_only: on the
real cluster it is reported as skipped with the reason (pytest -ra lists it), never run as if
it passed. An unmarked test that asks for such a fault fails (realcluster.NoRealEquivalent).
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "kubesim"))
sys.path.insert(0, HERE)

BACKENDS = ("kubesim", "real")
BACKEND = os.environ.get("HOLDFAST_TEST_CLUSTER", "kubesim")
if BACKEND not in BACKENDS:
    raise RuntimeError("HOLDFAST_TEST_CLUSTER=%r: expected one of %s" % (BACKEND, ", ".join(BACKENDS)))


def real():
    return BACKEND == "real"


def new_cluster(state_dir, image_map=None, proxy_delay_ms=0):
    """A cluster of the chosen backend, not started yet."""
    if real():
        from realcluster import RealCluster
        return RealCluster(state_dir, image_map=image_map, proxy_delay_ms=proxy_delay_ms)
    from simctl import KubeSim
    return KubeSim(state_dir, image_map=image_map, proxy_delay_ms=proxy_delay_ms)


def start_rollouts(sim):
    """Makes Rollouts (argoproj.io/v1alpha1) work on sim, once its start() has run; idempotent.
    kubesim simulates the Rollout controller and needs only the CRD (thirdparty_crds.ROLLOUT_CRD,
    with the scale subresource); the real cluster starts the upstream Argo Rollouts controller,
    which brings its own CRDs (realcluster.start_rollouts)."""
    if real():
        sim.start_rollouts()
    else:
        from simctl import wait_for
        from thirdparty_crds import ROLLOUT_CRD
        code, body = sim.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", ROLLOUT_CRD)
        assert code in (201, 409), body
        wait_for(lambda: sim.exists("/apis/argoproj.io/v1alpha1"), what="argoproj.io/v1alpha1 served")
    return sim


def kubesim_only(reason):
    """Marks a test that only kubesim can run, with the reason."""
    return pytest.mark.skipif(real(), reason="kubesim only: " + reason)


def node_name(sim):
    """The node pods run on (what an EndpointSlice's nodeName says)."""
    return getattr(sim, "node_name", "kubesim-node")
