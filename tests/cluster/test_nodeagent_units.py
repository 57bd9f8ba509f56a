"""Unit tests of the node agent's pure parts: no cluster, no namespaces."""
import threading

import pytest

from nodeagentlib import main as agentmain
from nodeagentlib.kubeapi import ApiError
from nodeagentlib.podnet import PodNetworks
from nodeagentlib.pods import Backoff, PodWorker, expand_k8s, parse_quantity, service_env


def test_crash_loop_back_off_is_immediate_then_doubles_to_the_cap_and_is_forgotten():
    b = Backoff(10, 300)
    waits, t = [], 0.0
    for _ in range(8):
        w = b.wait(t, t)
        waits.append(w)
        t += w
        b.next(t)
    assert waits == [0, 10, 20, 40, 80, 160, 300, 300]
    assert b.wait(t + 601, t + 601) == 0 and b.delay is None      # 2 x cap without a restart


def test_env_values_expand_only_defined_parenthesised_names_and_double_dollar_escapes():
    env = {"A": "x"}
    assert expand_k8s("$(A)-$(B)-$$(A)-$A", env) == "x-$(B)-$(A)-$A"


def test_service_env_gives_the_docker_link_variables():
    svc = {"metadata": {"name": "kubernetes"},
           "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}
    env = service_env(svc)
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["KUBERNETES_SERVICE_PORT_HTTPS"] == "443"
    assert env["KUBERNETES_PORT"] == env["KUBERNETES_PORT_443_TCP"] == "tcp://10.96.0.1:443"
    assert service_env({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}}) == {}


def test_pod_ips_come_only_from_the_range_and_name_their_slot(tmp_path):
    # scripts/cluster keeps .240 and up for the tests' own namespaces (docs/test-cluster.md)
    nets = PodNetworks("10.88.0.0/24", "hfbr0", "p-", str(tmp_path), "10.88.0.2-10.88.0.239")
    got = [nets.allocate("d/p%d" % i, str(i)) for i in range(238)]
    assert got[0] == ("10.88.0.2", 2) and got[-1] == ("10.88.0.239", 239)
    with pytest.raises(OSError, match="exhausted"):
        nets.allocate("d/one-more", "x")
    nets.release("10.88.0.7")
    assert nets.allocate("d/again", "y", prefer="10.88.0.250") == ("10.88.0.7", 7)   # not outside the range
    assert PodNetworks("10.88.0.0/24", "b", "p-", str(tmp_path)).allocate("d/p", "z") == ("10.88.0.2", 2)
    with pytest.raises(ValueError):
        PodNetworks("10.88.0.0/24", "b", "p-", str(tmp_path), "10.88.1.2-10.88.1.9")


def test_quantities():
    assert parse_quantity("64Mi") == 64 * 1024 * 1024 and parse_quantity("250m") == 0.25


class FakeApi:
    """Lists return `lists` in turn; each watch plays the next script of events or raises."""

    def __init__(self, lists, watches):
        self.lists, self.watches, self.watched_from = list(lists), list(watches), []

    def get(self, path, **kw):
        return self.lists.pop(0)

    def watch(self, path, rv, timeout_seconds=0, stop=None):
        self.watched_from.append(rv)
        script = self.watches.pop(0) if self.watches else "stop"
        if script == "stop":
            self.agent.stop_event.set()
            return
        if isinstance(script, Exception):
            raise script
        for ev in script:
            yield ev


def _pod(uid, rv):
    return {"metadata": {"uid": uid, "resourceVersion": rv, "name": uid, "namespace": "d"}}


def test_pod_watch_relists_on_410_resumes_after_a_drop_and_treats_vanished_pods_as_removed():
    agent = agentmain.Agent.__new__(agentmain.Agent)
    agent.node_name, agent.stop_event, agent.lock, agent.watch_conns = "n", threading.Event(), threading.Lock(), []
    removed, seen = [], []

    class W:
        def __init__(self, uid):
            self.uid = uid

        def removed(self):
            removed.append(self.uid)
    agent.workers = {"old": W("old")}
    agent._dispatch = lambda etype, pod: seen.append((etype, pod["metadata"]["uid"]))
    api = FakeApi(lists=[{"metadata": {"resourceVersion": "10"}, "items": [_pod("a", "9")]},
                         {"metadata": {"resourceVersion": "30"}, "items": [_pod("a", "25")]}],
                  watches=[[("ADDED", _pod("b", "11"))],                     # then the server ends it
                           OSError("connection reset"),
                           [("ERROR", {"code": 410, "message": "too old"})],
                           [("BOOKMARK", _pod("", "31"))]])
    api.agent = agent
    agent.api = api
    agent.pod_loop()
    assert api.watched_from == ["10", "11", "11", "30", "31"]
    assert seen == [("MODIFIED", "a"), ("ADDED", "b"), ("MODIFIED", "a")]
    assert removed == ["old", "old"]           # not in either list (the fake never drops it)


def test_api_error_reason():
    assert ApiError(410, {"reason": "Expired"}).reason == "Expired"


def test_a_pods_final_delete_is_tried_again_while_the_api_server_is_away():
    """Found by the soak on the real cluster: the delete after the containers exited raised
    'Connection refused' during an API server restart and the pod worker died (the pod stayed
    until a later resync)."""
    calls = []

    class Api:
        def delete(self, path, body):
            calls.append(path)
            if len(calls) == 1:
                raise ConnectionRefusedError(111, "Connection refused")
            if len(calls) == 2:
                raise ApiError(503, {"reason": "ServiceUnavailable"})
            return {}

    w = PodWorker.__new__(PodWorker)
    threading.Thread.__init__(w)
    w.ns, w.name, w.uid = "d", "p", "u1"
    w.a = type("A", (), {"api": Api(), "stop_event": threading.Event()})()
    w._delete_from_api(retry_s=0.01)
    assert calls == ["/api/v1/namespaces/d/pods/p"] * 3

    class Gone(Api):
        def delete(self, path, body):
            calls.append(path)
            raise ApiError(404, {"reason": "NotFound"})
    calls.clear()
    w.a.api = Gone()
    w._delete_from_api(retry_s=0.01)
    assert len(calls) == 1
