"""Fixtures for the node agent's tests.

- cluster: for the whole session, a control plane and one node agent started as
  CONTRACT-cluster.md starts it. The control plane is standin.py's, a STAND-IN until
  `scripts/cluster up` lands. The test process's main thread is moved into the cluster's network
  namespace (so the tests reach 10.88.0.1:6443 and pod IPs; nothing is sent from the host's).
- ns: a fresh namespace whose default ServiceAccount exists."""
import itertools
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import standin  # noqa: E402
from clusterfix import BACKOFF, IMAGES, Cluster, start_agent, stop_agent, wait_for  # noqa: E402
from nodeagentlib.kubeapi import Api, ApiError  # noqa: E402


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    st = standin.StandIn(str(tmp_path_factory.mktemp("hfn")))
    agent = None
    try:
        st.up()
        with open(os.path.join(st.dir, "image-map.json"), "w") as f:
            json.dump(IMAGES, f)
        agent = start_agent(st, BACKOFF)
        st.enter()
        api = Api.from_kubeconfig(st.kubeconfig, os.path.join(st.dir, "test-credentials"))
        yield Cluster(st, agent, api)
    finally:
        st.leave()
        if agent is not None:
            stop_agent(agent)
        left = st.down()
        assert left == [st.netns], "namespaces left after the agent stopped: %s" % left


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
