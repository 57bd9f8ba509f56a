"""testcluster: the soak's cluster switch, and nothing else's (issue 11).

Every test runs on the real control plane (tests/lib/realcluster.py: upstream etcd,
kube-apiserver, controller-manager, scheduler, kube-proxy, with the node agent; needs root) and
builds its RealCluster itself. Only the randomized soak (tests/soak/soak.py) still picks its
cluster here, because CI replays it on kubesim until its runs on the real control plane stop
finding Kubernetes-side losses (tests/soak/README.md):

    HOLDFAST_TEST_CLUSTER=kubesim (the soak's default): tests/kubesim, the Python stand-in,
        kept in place for the soak alone
    HOLDFAST_TEST_CLUSTER=real: the real control plane

This module, tests/kubesim and HOLDFAST_TEST_CLUSTER go when the soak moves onto the real
control plane.
"""
import os
import sys

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


def node_name(sim):
    """The node pods run on (what an EndpointSlice's nodeName says)."""
    return getattr(sim, "node_name", "kubesim-node")
