"""Fixtures of the end-to-end suite (docs/e2e.md): one real test cluster for the package
(`scripts/cluster up`: upstream etcd, kube-apiserver, controller-manager, scheduler and
kube-proxy, the node agent as kubelet; kube-proxy delay E2E_PROXY_DELAY_MS, default 700 ms) with
the chart installed by `helm install` (default values: 2 holdfast pods running build/holdfast or
$HOLDFAST_BIN, only the chart's RBAC), a fresh namespace per test, and holdfast's pod logs shown
when a test fails. pytest's main thread runs inside the cluster's network namespace while the
cluster is up, so every client of the tests does too; nothing is sent from the host namespace."""
import itertools

import pytest

from e2e import e2elib

_count = itertools.count()


# package scope: the cluster goes down after the last test of tests/e2e, before tests/cluster's
# own session cluster comes up in a whole run
@pytest.fixture(scope="package")
def cluster(tmp_path_factory):
    why = e2elib.can_run()
    if why:
        pytest.skip(why)
    sim = e2elib.start_cluster(tmp_path_factory.mktemp("e2e-cluster"))
    try:
        e2elib.install_chart(sim)
    except BaseException:
        print(e2elib.holdfast_logs(sim))
        e2elib.stop_cluster(sim)
        raise
    yield sim
    assert e2elib.stop_cluster(sim) == [], "network namespaces of the cluster left behind"


@pytest.fixture
def ns(cluster, request):
    name = "e2e-%d" % next(_count)
    cluster.kubectl("create", "namespace", name)
    e2elib.wait_namespace_usable(cluster, name)
    yield name
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("\n===== holdfast pod logs (tail) =====\n" + e2elib.holdfast_logs(cluster))
    # stop the app's pods; the namespace itself stays (cheap) so logs and objects can be read
    cluster.kubectl("delete", "elastiservices.elasti.truefoundry.com", "--all", "-n", name, "--timeout=30s",
                    check=False)
    cluster.kubectl("delete", "deployment", "--all", "-n", name, "--wait=false", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
