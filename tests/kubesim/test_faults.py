"""Each fault-injection knob, shown through a real client."""
import subprocess
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from conftest import deployment
from simctl import wait_for


@pytest.fixture
def sim(make_sim):
    return make_sim()


def test_outage_refuse(sim):
    core = client.CoreV1Api(sim.python_client())
    assert core.list_namespace().items
    sim.outage(1.5, mode="refuse")
    r = sim.kubectl("get", "ns", "--request-timeout=2s", check=False)
    assert r.returncode != 0 and "connection refused" in r.stderr
    with pytest.raises(Exception) as e:
        client.CoreV1Api(sim.python_client()).list_namespace(_request_timeout=2)
    assert "refused" in str(e.value).lower() or "Max retries" in str(e.value)
    wait_for(lambda: sim.kubectl("get", "ns", "--request-timeout=2s", check=False).returncode == 0,
             timeout=10, what="API back after the outage")


def test_outage_refuse_drops_kept_alive_connections(sim):
    """A client that reuses one TLS connection must not sail through an outage on it."""
    import http.client
    import ssl
    ctx = ssl.create_default_context(cafile=sim.ca_file)
    host, port = sim.api_url.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=5)
    headers = {"Authorization": "Bearer " + sim.token}
    conn.request("GET", "/api/v1/namespaces", headers=headers)
    assert conn.getresponse().read() and True
    sim.outage(1.5, mode="refuse")
    with pytest.raises((OSError, http.client.HTTPException)):
        conn.request("GET", "/api/v1/namespaces", headers=headers)
        conn.getresponse().read()
    conn.close()


def test_outage_503(sim):
    core = client.CoreV1Api(sim.python_client())
    sim.outage(1.5, mode="503")
    with pytest.raises(ApiException) as e:
        core.list_namespace()
    assert e.value.status == 503 and "ServiceUnavailable" in e.value.body
    wait_for(lambda: core.list_namespace().items, timeout=10, what="API back after the 503 outage")


def test_drop_watches(sim):
    api = sim.python_client()
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    w = watch.Watch()
    stream = w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=30)
    t0 = time.monotonic()
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a")))
    assert next(stream)["object"].metadata.name == "a"
    wait_for(lambda: sim.state()["watches"] == 1, what="one open watch")
    assert sim.drop_watches()["droppedWatches"] == 1
    with pytest.raises(StopIteration):
        next(stream)                      # the stream ends long before its 30 s timeout
    assert time.monotonic() - t0 < 20
    assert sim.state()["watches"] == 0


def test_compaction_forces_410_on_next_watch(sim):
    core = client.CoreV1Api(sim.python_client())
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a")))
    # Before compaction the old RV still replays.
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=5):
        assert ev["object"].metadata.name == "a"
        w.stop()
    sim.compact()
    with pytest.raises(ApiException) as e:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                      timeout_seconds=5):
            pass
    assert e.value.status == 410
    # The raw wire form: HTTP 200 then one ERROR event carrying a 410 Expired Status.
    code, body = sim.request("GET", "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion=%s" % rv)
    assert code == 200 and body["type"] == "ERROR"
    assert body["object"]["code"] == 410 and body["object"]["reason"] == "Expired"


def test_extra_latency(sim):
    sim.latency(400)
    t0 = time.monotonic()
    sim.get("/api/v1/namespaces")
    assert time.monotonic() - t0 >= 0.4
    sim.latency(0)
    t0 = time.monotonic()
    sim.get("/api/v1/namespaces")
    assert time.monotonic() - t0 < 0.35       # a loopback request without the fault takes milliseconds


def test_kill_pod(sim):
    sim.create("/apis/apps/v1/namespaces/default/deployments", deployment("web"))
    sim.wait_ready_replicas("default", "web", 1)
    pod = sim.get("/api/v1/namespaces/default/pods")["items"][0]
    name = pod["metadata"]["name"]
    old_pid = sim.state()["pods"]["default/" + name]["pids"][0]
    sim.kill_pod("default", name)

    def restarted():
        p = sim.get("/api/v1/namespaces/default/pods/" + name)
        cs = p["status"]["containerStatuses"][0]
        return cs["restartCount"] == 1 and cs["ready"] and cs["lastState"]["terminated"]["exitCode"] == 137
    wait_for(restarted, timeout=15, what="container restarted after the kill")
    assert sim.state()["pods"]["default/" + name]["pids"][0] != old_pid
    r = subprocess.run(["kill", "-0", str(old_pid)], capture_output=True)
    assert r.returncode != 0


def test_slow_write_answers_reach_watchers_first(sim):
    """A write's watch event goes out at once; its answer after the delay."""
    import threading
    path = "/api/v1/namespaces/default/configmaps"
    seen = {}
    w = sim.kubectl_popen("get", "configmaps", "-n", "default", "--watch-only", "-o", "name")
    try:
        def read():
            for line in w.stdout:
                if "slow" in line:
                    seen["event"] = time.monotonic()
                    return
        t = threading.Thread(target=read, daemon=True)
        t.start()
        time.sleep(1.0)  # kubectl's watch is open
        sim.slow_write_answers(800)
        t0 = time.monotonic()
        sim.create(path, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "slow"}})
        answered = time.monotonic()
        t.join(5)
        assert answered - t0 >= 0.8
        assert seen.get("event") is not None and seen["event"] < answered, (seen, t0, answered)
        sim.slow_write_answers(0)
        t0 = time.monotonic()
        sim.delete(path + "/slow")
        assert time.monotonic() - t0 < 0.5
    finally:
        w.kill()
        w.wait(5)
        sim.clear_faults()
