"""Fixtures of tests/cluster.

- shared_cluster: for the whole session, one cluster started by `scripts/cluster up` (image map
  clusterfix.IMAGES, kube-proxy 1.5 s behind, the node agent's back-offs shortened), brought
  down by `scripts/cluster down` at the end. Every test that does not need a cluster of its own
  uses it; a test that stops a component starts it again.
- cluster: the shared cluster, once its control plane holds its leases and its Node is Ready
  (an earlier test's fault may have restarted them; not waited for a test marked no_settle), with the test's main thread inside its
  network namespace for the test's duration (so the test reaches 10.88.0.1:6443 and pod IPs;
  nothing is sent from the host's namespace).
- ns: a fresh namespace whose default ServiceAccount exists.

A cold binary cache makes the first `up` build the binaries (about 12 minutes;
docs/test-cluster.md)."""
import itertools
import json

import pytest

import netns
from clusterfix import (BACKOFF_INITIAL, BACKOFF_MAX, IMAGES, PROXY_DELAY_MS, Cluster, cluster_cmd,
                        need_root, wait_for)
from nodeagentlib.kubeapi import ApiError


@pytest.fixture(scope="session")
def shared_cluster(tmp_path_factory):
    need_root()
    state = tmp_path_factory.mktemp("cluster")
    images = tmp_path_factory.mktemp("images") / "images.json"
    images.write_text(json.dumps(IMAGES))
    r = cluster_cmd("up", "--state-dir", state, "--image-map", images, "--proxy-delay-ms", PROXY_DELAY_MS,
                    "--node-backoff-initial", BACKOFF_INITIAL, "--node-backoff-max", BACKOFF_MAX)
    print(r.stdout + r.stderr)
    if r.returncode != 0:
        cluster_cmd("down", "--state-dir", state)
        pytest.fail("scripts/cluster up failed (%d):\n%s%s" % (r.returncode, r.stdout, r.stderr))
    c = Cluster(state)
    try:
        yield c
    finally:
        c.leave()
        r = cluster_cmd("down", "--state-dir", state, timeout=300)
        print(r.stdout + r.stderr)
        assert r.returncode == 0, r.stdout + r.stderr
        assert netns.with_prefix(c.ns) == []


@pytest.fixture
def cluster(shared_cluster, request):
    shared_cluster.enter()
    try:
        if request.node.get_closest_marker("no_settle") is None:
            shared_cluster.wait_healthy()
        yield shared_cluster
    finally:
        shared_cluster.leave()


_counter = itertools.count()


@pytest.fixture
def ns(cluster, request):
    name = "t%d-%s" % (next(_counter), request.node.name.lower().replace("_", "-")[:40].strip("-"))
    cluster.api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_for(lambda: cluster.api.get("/api/v1/namespaces/%s/serviceaccounts/default" % name), 30,
             "the default ServiceAccount of " + name)
    yield name
    try:
        cluster.api.delete("/api/v1/namespaces/" + name)
    except (ApiError, OSError):
        pass
