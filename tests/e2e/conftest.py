"""Fixtures of the end-to-end suite (docs/e2e.md): one kubesim per session (kube-proxy delay
E2E_PROXY_DELAY_MS, default 700 ms) with the rendered chart installed (default values: 2 holdfast
pods running build/holdfast or $HOLDFAST_BIN, only the chart's RBAC), a fresh namespace per test,
and holdfast's pod logs shown when a test fails."""
import itertools
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2elib  # noqa: E402

_count = itertools.count()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    if not os.access(e2elib.HOLDFAST, os.X_OK):
        pytest.skip("no holdfast binary at %s (build it, or set HOLDFAST_BIN)" % e2elib.HOLDFAST)
    sim = e2elib.start_cluster(tmp_path_factory.mktemp("e2e-sim"))
    try:
        e2elib.install_chart(sim)
    except BaseException:
        print(e2elib.holdfast_logs(sim))
        sim.stop()
        raise
    yield sim
    assert sim.stop() == [], "pod processes survived kubesim"


@pytest.fixture
def ns(cluster, request):
    name = "e2e-%d" % next(_count)
    cluster.kubectl("create", "namespace", name)
    yield name
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print("\n===== holdfast pod logs (tail) =====\n" + e2elib.holdfast_logs(cluster))
    # stop the app's pods; the namespace itself stays (cheap) so logs and objects can be read
    cluster.kubectl("delete", "elastiservices.elasti.truefoundry.com", "--all", "-n", name, "--timeout=20s",
                    check=False)
    cluster.kubectl("delete", "deployment", "--all", "-n", name, "--wait=false", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
