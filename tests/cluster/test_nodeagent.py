"""The node agent against the real API server: each test names the kubelet behaviour it proves.
The agent is the shared cluster's (conftest.py), started by `scripts/cluster up` with short
back-offs; the last test stops it and starts it again."""
import http.client
import ipaddress
import json
import os
import re
import time

import pytest

import clusterlib
from clusterfix import BACKOFF_INITIAL, wait_for

POD_CIDR = ipaddress.ip_network("10.88.0.0/24")


def _cond(pod, ctype):
    return next((c["status"] for c in (pod.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)


def _http_get(ip, port, path="/"):
    conn = http.client.HTTPConnection(ip, port, timeout=3)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read().decode()
    finally:
        conn.close()


def _gone(cluster, ns, name):
    try:
        cluster.pod(ns, name)
        return False
    except Exception as e:  # noqa: BLE001
        return getattr(e, "status", None) == 404


def test_node_registers_ready_with_its_address_and_cidr_and_renews_its_lease(cluster):
    node = wait_for(lambda: cluster.api.get("/api/v1/nodes/hfc-node"), 30, "Node hfc-node")
    # as a kubelet reports them; the API server dials the InternalIP (logs, below)
    assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "10.88.0.1"},
                                           {"type": "Hostname", "address": "hfc-node"}]
    assert node["spec"]["podCIDR"] == "10.88.0.0/24"
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.37.2"
    wait_for(lambda: _cond(cluster.api.get("/api/v1/nodes/hfc-node"), "Ready") == "True", 30, "Node Ready")
    # the node lifecycle controller lifts the not-ready taint once it sees the node Ready
    wait_for(lambda: not any(t["key"] == "node.kubernetes.io/not-ready"
                             for t in cluster.api.get("/api/v1/nodes/hfc-node")["spec"].get("taints") or []),
             30, "the not-ready taint to go")
    lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/hfc-node"
    lease = wait_for(lambda: cluster.api.get(lease_path), 30, "Lease hfc-node")
    assert lease["spec"]["holderIdentity"] == "hfc-node"
    assert lease["metadata"]["ownerReferences"][0]["name"] == "hfc-node"
    first = lease["spec"]["renewTime"]
    wait_for(lambda: cluster.api.get(lease_path)["spec"]["renewTime"] != first, 15, "the Lease to be renewed")


def test_agent_shares_the_hosts_mount_namespace_so_its_pod_namespaces_show_everywhere(cluster, ns):
    agent = cluster.daemons.get("nodeagent")[0]
    assert os.readlink("/proc/%d/ns/mnt" % agent) == os.readlink("/proc/self/ns/mnt")
    assert os.readlink("/proc/%d/ns/net" % agent) == os.readlink("/proc/thread-self/ns/net")   # the cluster's
    cluster.create_pod(ns, "seen", [{"name": "main", "image": "hfc/sh", "command": ["-c", "exec sleep 3600"]}])
    ip = wait_for(lambda: cluster.pod(ns, "seen")["status"].get("podIP"), 30, "a pod IP")
    names = os.popen("ip netns list").read().split()
    assert [n for n in cluster.netns_with_ip(ip) if n in names], names


def test_deployment_pod_runs_from_the_image_map_gets_ready_and_answers_on_its_pod_ip(cluster, ns, tmp_path):
    envfile = tmp_path / "env.json"
    dump_env = "import json,os; json.dump(dict(os.environ), open(%r, 'w'))" % str(envfile)
    c = {"name": "main", "image": "hfc/http:1", "ports": [{"containerPort": 8080}],
         "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}
    side = {"name": "env", "image": "hfc/python", "command": ["-c", dump_env + "; import time; time.sleep(3600)"],
            "env": [{"name": "EARLY", "value": "hello $(MY_POD)"},           # not yet defined: left as it is
                    {"name": "MY_POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "LATE", "value": "hello $(MY_POD) $$(MY_POD)"},
                    {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "MY_APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                    {"name": "MEM_LIMIT_MI", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                               "divisor": "1Mi"}}}],
            "resources": {"limits": {"memory": "64Mi"}}}
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [c, side]}}}}
    cluster.api.post("/apis/apps/v1/namespaces/%s/deployments" % ns, dep)

    def ready_pod():
        pods = cluster.api.get("/api/v1/namespaces/%s/pods" % ns)["items"]
        return next((p for p in pods if _cond(p, "Ready") == "True"), None)
    pod = wait_for(ready_pod, 60, "the Deployment's pod to be Ready")
    st = pod["status"]
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"      # the real controllers made it
    assert st["phase"] == "Running"
    assert ipaddress.ip_address(st["podIP"]) in POD_CIDR and st["podIP"] != "10.88.0.1"
    assert st["podIPs"] == [{"ip": st["podIP"]}]
    assert st["hostIP"] == "10.88.0.1" and st["startTime"]
    for ctype in ("PodScheduled", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready"):
        assert _cond(pod, ctype) == "True", ctype
    main = next(cs for cs in st["containerStatuses"] if cs["name"] == "main")
    assert main["ready"] and main["started"] and main["restartCount"] == 0
    assert main["image"] == "hfc/http:1" and main["imageID"].startswith("hfc/http@sha256:")
    assert main["containerID"].startswith("hfc://") and "startedAt" in main["state"]["running"]

    assert _http_get(st["podIP"], 8080) == (200, pod["metadata"]["name"] + "\n")
    ports = [line for line in os.popen("ip -d -o link show master hfbr0").read().splitlines()
             if re.search(r": hfv[0-9]+@", line)]
    assert ports and all("hairpin on" in line for line in ports), ports

    env = wait_for(lambda: envfile.exists() and json.loads(envfile.read_text()), 20, "the env dump")
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1" and env["KUBERNETES_SERVICE_PORT"] == "443"
    assert env["POD_NAMESPACE"] == ns and env["POD_IP"] == st["podIP"]
    name = pod["metadata"]["name"]
    assert env["MEM_LIMIT_MI"] == "64"
    assert (env["EARLY"], env["LATE"]) == ("hello $(MY_POD)", "hello %s $(MY_POD)" % name)
    assert (env["MY_POD"], env["MY_IP"], env["MY_NODE"], env["MY_APP"]) == (name, st["podIP"], "hfc-node", "web")
    assert not os.path.exists("/run/secrets/kubernetes.io"), "the token mount leaked into the host's files"


def test_startup_probe_holds_readiness_back_until_it_passes(cluster, ns, tmp_path):
    started = tmp_path / "started"
    cluster.create_pod(ns, "slow", [{
        "name": "main", "image": "hfc/http:1", "ports": [{"containerPort": 8080}],
        "startupProbe": {"exec": {"command": ["test", "-e", str(started)]}, "periodSeconds": 1,
                         "failureThreshold": 60},
        "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}])
    cs = wait_for(lambda: (cluster.container_status(ns, "slow") or {}).get("state", {}).get("running") and
                  cluster.container_status(ns, "slow"), 30, "the container to run")
    time.sleep(3)                                   # the server listens by now; only the startup probe holds it
    cs = cluster.container_status(ns, "slow")
    assert "running" in cs["state"] and cs["started"] is False and cs["ready"] is False
    assert _cond(cluster.pod(ns, "slow"), "Ready") == "False"
    assert _http_get(cluster.pod(ns, "slow")["status"]["podIP"], 8080)[0] == 200
    started.write_text("")
    wait_for(lambda: _cond(cluster.pod(ns, "slow"), "Ready") == "True", 15, "Ready after the startup probe")
    cs = cluster.container_status(ns, "slow")
    assert cs["started"] is True and cs["restartCount"] == 0


def test_failing_liveness_probe_restarts_the_container(cluster, ns):
    cluster.create_pod(ns, "sick", [{
        "name": "main", "image": "hfc/http:1", "ports": [{"containerPort": 8080}],
        "env": [{"name": "READY_FILE", "value": "/nonexistent"}],          # GET /ready answers 503
        "livenessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1, "failureThreshold": 2,
                          "initialDelaySeconds": 1}}], terminationGracePeriodSeconds=2)
    cs = wait_for(lambda: (cluster.container_status(ns, "sick") or {}).get("restartCount", 0) >= 1 and
                  cluster.container_status(ns, "sick"), 40, "a restart after the liveness probe failed")
    assert "terminated" in cs["lastState"]
    assert cluster.pod(ns, "sick")["status"]["phase"] == "Running"


def test_crashing_container_goes_to_crash_loop_back_off(cluster, ns):
    cluster.create_pod(ns, "crash", [{"name": "main", "image": "hfc/sh", "command": ["-c", "exit 3"]}])
    cs = wait_for(lambda: ((cluster.container_status(ns, "crash") or {}).get("state", {}).get("waiting") or {})
                  .get("reason") == "CrashLoopBackOff" and cluster.container_status(ns, "crash"), 30,
                  "CrashLoopBackOff")
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    assert cs["restartCount"] >= 1 and cs["ready"] is False
    # scripts/cluster up --node-backoff-initial reached the agent
    assert "back-off %ds restarting failed container=main" % BACKOFF_INITIAL in cs["state"]["waiting"]["message"]
    pod = cluster.pod(ns, "crash")
    assert pod["status"]["phase"] == "Running"              # restartPolicy Always: the pod keeps running

    cluster.create_pod(ns, "once", [{"name": "main", "image": "hfc/sh", "command": ["-c", "exit 4"]}],
                       restartPolicy="Never")
    wait_for(lambda: cluster.pod(ns, "once")["status"].get("phase") == "Failed", 30, "phase Failed")
    cs = cluster.container_status(ns, "once")
    assert cs["state"]["terminated"]["exitCode"] == 4 and cs["restartCount"] == 0


def test_unknown_image_shows_err_image_pull_then_image_pull_back_off(cluster, ns):
    cluster.create_pod(ns, "nope", [{"name": "main", "image": "example.invalid/nope:1"}])
    seen = []

    def reasons():
        r = (((cluster.container_status(ns, "nope") or {}).get("state") or {}).get("waiting") or {}).get("reason")
        if r and (not seen or seen[-1] != r):
            seen.append(r)
        return "ImagePullBackOff" in seen and "ErrImagePull" in seen
    wait_for(reasons, 30, "ErrImagePull then ImagePullBackOff", interval=0.1)
    assert seen.index("ErrImagePull") < seen.index("ImagePullBackOff"), seen
    assert cluster.pod(ns, "nope")["status"]["phase"] == "Pending"


def test_deletion_runs_pre_stop_then_sigterm_then_sigkill_after_the_grace_period(cluster, ns, tmp_path):
    trace = tmp_path / "trace"
    script = ("echo $$ > %(t)s.pid; trap 'echo TERM >> %(t)s' TERM; echo started >> %(t)s; "
              "while :; do sleep 0.1; done") % {"t": trace}
    cluster.create_pod(ns, "stubborn", [{
        "name": "main", "image": "hfc/sh", "command": ["-c", script],
        "lifecycle": {"preStop": {"exec": {"command": ["/bin/sh", "-c", "echo preStop >> %s" % trace]}}}}],
        terminationGracePeriodSeconds=3)
    wait_for(lambda: trace.exists() and "started" in trace.read_text(), 30, "the container to start")
    pid = int((tmp_path / "trace.pid").read_text())
    ip = cluster.pod(ns, "stubborn")["status"]["podIP"]
    assert cluster.netns_with_ip(ip)
    t0 = time.monotonic()
    cluster.api.delete("/api/v1/namespaces/%s/pods/stubborn" % ns)
    wait_for(lambda: _gone(cluster, ns, "stubborn"), 20, "the pod object to be deleted")
    took = time.monotonic() - t0
    assert trace.read_text().split() == ["started", "preStop", "TERM"]
    assert 3 <= took < 8, "the pod was gone %.1f s after deletion; the grace period is 3 s" % took
    assert not os.path.exists("/proc/%d" % pid), "the container ignoring SIGTERM still runs"
    assert cluster.netns_with_ip(ip) == [], "the pod's network namespace outlived it"


def test_force_deleted_pod_is_killed_within_two_seconds(cluster, ns, tmp_path):
    pidfile = tmp_path / "pid"
    cluster.create_pod(ns, "forced", [{"name": "main", "image": "hfc/sh",
                                       "command": ["-c", "echo $$ > %s; trap '' TERM; while :; do sleep 0.1; done"
                                                   % pidfile]}], terminationGracePeriodSeconds=60)
    pid = wait_for(lambda: pidfile.exists() and int(pidfile.read_text()), 30, "the container to start")
    ip = cluster.pod(ns, "forced")["status"]["podIP"]
    cluster.api.delete("/api/v1/namespaces/%s/pods/forced" % ns, {"gracePeriodSeconds": 0})
    assert _gone(cluster, ns, "forced")                       # the API server removed it at once
    wait_for(lambda: not os.path.exists("/proc/%d" % pid), 5, "the process to be killed")
    wait_for(lambda: cluster.netns_with_ip(ip) == [], 5, "the namespace to go")


def test_service_account_token_authenticates_as_the_pods_service_account(cluster, ns, tmp_path):
    out = tmp_path / "review.json"
    script = """
import json, ssl, http.client
d = "/var/run/secrets/kubernetes.io/serviceaccount/"
token, ns = open(d + "token").read(), open(d + "namespace").read()
ctx = ssl.create_default_context(cafile=d + "ca.crt")
c = http.client.HTTPSConnection("10.88.0.1", 6443, context=ctx, timeout=10)
c.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
          json.dumps({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
          {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
r = c.getresponse()
json.dump({"status": r.status, "body": json.loads(r.read()), "namespace": ns}, open(%r, "w"))
""" % str(out)
    cluster.create_pod(ns, "whoami", [{"name": "main", "image": "hfc/python", "command": ["-c", script]}],
                       restartPolicy="Never")
    wait_for(lambda: cluster.pod(ns, "whoami")["status"].get("phase") in ("Succeeded", "Failed"), 40,
             "the pod to finish")
    pod = cluster.pod(ns, "whoami")
    assert pod["status"]["phase"] == "Succeeded"
    # a finished pod keeps its object and status, but its network namespace goes, as a sandbox does
    wait_for(lambda: cluster.netns_with_ip(pod["status"]["podIP"]) == [], 10, "the finished pod's namespace to go")
    r = json.loads(out.read_text())
    assert r["status"] == 201 and r["namespace"] == ns
    ui = r["body"]["status"]["userInfo"]
    assert ui["username"] == "system:serviceaccount:%s:default" % ns
    assert ui["extra"]["authentication.kubernetes.io/pod-name"] == ["whoami"]
    assert not os.path.exists("/run/secrets/kubernetes.io")


def test_init_container_runs_first_and_volumes_and_config_map_env_reach_the_containers(cluster, ns, tmp_path):
    out = tmp_path / "out"
    cluster.api.post("/api/v1/namespaces/%s/configmaps" % ns, {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": "cfg"}, "data": {"greeting": "hello", "color": "blue"}})
    mounts = [{"name": "shared", "mountPath": "/run/hfc-shared"}]
    cluster.create_pod(ns, "init", [{
        "name": "main", "image": "hfc/sh", "volumeMounts": mounts,
        "command": ["-c", "cat /run/hfc-shared/msg > %s; echo $COLOR >> %s; exec sleep 3600" % (out, out)],
        "env": [{"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}}]}],
        initContainers=[{"name": "setup", "image": "hfc/sh",
                         "volumeMounts": mounts + [{"name": "cfg", "mountPath": "/etc/hfc-config", "readOnly": True}],
                         "command": ["-c", "cat /etc/hfc-config/greeting > /run/hfc-shared/msg"]}],
        volumes=[{"name": "shared", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}])
    wait_for(lambda: out.exists() and out.read_text() == "helloblue\n", 40, "main to see what init wrote")
    pod = cluster.pod(ns, "init")
    assert _cond(pod, "Initialized") == "True"
    init = pod["status"]["initContainerStatuses"][0]
    assert init["state"]["terminated"]["reason"] == "Completed" and init["state"]["terminated"]["exitCode"] == 0
    assert not os.path.exists("/run/hfc-shared") and not os.path.exists("/etc/hfc-config")


def test_pod_logs_and_events_reach_the_api(cluster, ns):
    cluster.create_pod(ns, "talk", [{"name": "main", "image": "hfc/sh",
                                     "command": ["-c", "echo hello from $POD_NAME; exec sleep 3600"]}])
    cluster.create_pod(ns, "crashy", [{"name": "main", "image": "hfc/sh",
                                       "command": ["-c", "echo run; exit 3"]}])
    log_path = "/api/v1/namespaces/%s/pods/talk/log" % ns
    text = wait_for(lambda: cluster.api.request_text("GET", log_path), 40, "the pod's log")
    assert text == "hello from talk\n"
    conn = cluster.api._conn()                           # kubectl logs -f: the stream stays open
    try:
        conn.request("GET", log_path + "?follow=true")
        resp = conn.getresponse()
        assert resp.status == 200 and resp.readline() == b"hello from talk\n"
    finally:
        conn.close()
    wait_for(lambda: cluster.container_status(ns, "crashy")["restartCount"] >= 1, 40, "a restart")
    prev = cluster.api.request_text("GET", "/api/v1/namespaces/%s/pods/crashy/log?previous=true" % ns)
    assert prev == "run\n"

    def reasons():
        evs = cluster.api.get("/api/v1/namespaces/%s/events" % ns)["items"]
        return {e["reason"] for e in evs if e["involvedObject"]["name"] == "talk"}
    wait_for(lambda: {"Scheduled", "Pulled", "Created", "Started"} <= reasons(), 20, "the kubelet's events")


def test_host_network_pod_runs_in_the_nodes_namespace_with_the_node_ip(cluster, ns, tmp_path):
    out = tmp_path / "ip"
    cluster.create_pod(ns, "hostnet", [{"name": "main", "image": "hfc/sh",
                                        "command": ["-c", "echo $POD_IP > %s; ip -o -4 addr show hfbr0 >> %s; "
                                                          "exec sleep 3600" % (out, out)]}],
                       hostNetwork=True)
    text = wait_for(lambda: out.exists() and "hfbr0" in out.read_text() and out.read_text(), 30, "the pod to run")
    assert text.splitlines()[0] == "10.88.0.1" and "10.88.0.1/24" in text
    assert cluster.pod(ns, "hostnet")["status"]["podIP"] == "10.88.0.1"


def test_grpc_readiness_probe_follows_the_health_service(cluster, ns, tmp_path):
    serving = tmp_path / "serving"
    serving.write_text("")
    cluster.create_pod(ns, "grpc", [{
        "name": "main", "image": "hfc/grpc-health", "ports": [{"containerPort": 9090}],
        "env": [{"name": "SERVING_FILE", "value": str(serving)}],
        "readinessProbe": {"grpc": {"port": 9090}, "periodSeconds": 1, "failureThreshold": 1}}])
    wait_for(lambda: _cond(cluster.pod(ns, "grpc"), "Ready") == "True", 40, "Ready by the grpc probe")
    serving.unlink()
    wait_for(lambda: _cond(cluster.pod(ns, "grpc"), "Ready") == "False", 15, "not Ready once NOT_SERVING")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill_pod_fault_kills_the_container_which_restarts_per_restart_policy(cluster, ns):
    cluster.create_pod(ns, "victim", [{"name": "main", "image": "hfc/sh", "command": ["-c", "exec sleep 3600"]},
                                      {"name": "side", "image": "hfc/sh", "command": ["-c", "exec sleep 3600"]}])
    wait_for(lambda: all(cluster.container_status(ns, "victim", c) and cluster.container_status(ns, "victim", c)[
        "ready"] for c in ("main", "side")), 30, "both containers ready")
    first = cluster.container_status(ns, "victim")["containerID"]
    r = cluster.kill_pod(ns, "victim")
    assert r["killed"] == "%s/victim" % ns and r["signal"] == "SIGKILL"
    assert sorted(r["containers"]) == ["main", "side"]           # every container, as kubesim's
    wait_for(lambda: not any(_alive(p) for p in r["containers"].values()), 10, "the killed processes gone")

    def restarted(c):
        cs = cluster.container_status(ns, "victim", c)
        return cs["restartCount"] == 1 and cs["ready"] and "running" in cs["state"] and cs
    cs = wait_for(lambda: restarted("main"), 30, "main restarted after the kill")
    term = cs["lastState"]["terminated"]
    assert term["exitCode"] == 137 and term["reason"] == "Error"  # 128 + SIGKILL, as a runtime reports it
    assert term["containerID"] == first and cs["containerID"] != first
    wait_for(lambda: restarted("side"), 30, "side restarted after the kill")
    assert cluster.pod(ns, "victim")["status"]["phase"] == "Running"

    # restartPolicy Never: a SIGTERM ends the container for good and the pod fails
    cluster.create_pod(ns, "once", [{"name": "main", "image": "hfc/sh", "command": ["-c", "exec sleep 3600"]}],
                       restartPolicy="Never")
    wait_for(lambda: (cluster.container_status(ns, "once") or {}).get("ready"), 30, "once ready")
    assert cluster.kill_pod(ns, "once", "TERM")["signal"] == "SIGTERM"
    wait_for(lambda: cluster.pod(ns, "once")["status"].get("phase") == "Failed", 30, "phase Failed")
    cs = cluster.container_status(ns, "once")
    assert cs["state"]["terminated"]["exitCode"] == 143 and cs["restartCount"] == 0
    # nothing runs now: the agent says so rather than doing nothing
    with pytest.raises(clusterlib.ClusterError, match="none of its containers runs"):
        cluster.kill_pod(ns, "once")


def test_kill_pod_fault_refuses_an_unknown_pod_or_signal_naming_it(cluster, ns):
    with pytest.raises(clusterlib.ClusterError, match="pod %s/nosuch does not run on this node" % ns):
        cluster.kill_pod(ns, "nosuch")
    cluster.create_pod(ns, "calm", [{"name": "main", "image": "hfc/sh", "command": ["-c", "exec sleep 3600"]}])
    wait_for(lambda: (cluster.container_status(ns, "calm") or {}).get("ready"), 30, "calm ready")
    with pytest.raises(clusterlib.ClusterError, match="signal 'BOGUS': not a signal name"):
        cluster.kill_pod(ns, "calm", "BOGUS")
    assert cluster.container_status(ns, "calm")["restartCount"] == 0


def test_pods_keep_running_across_an_api_server_restart_and_the_watch_comes_back(cluster, ns):
    cluster.create_pod(ns, "steady", [{"name": "main", "image": "hfc/http:1", "ports": [{"containerPort": 8080}],
                                       "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}])
    wait_for(lambda: _cond(cluster.pod(ns, "steady"), "Ready") == "True", 40, "Ready")
    before = cluster.container_status(ns, "steady")
    # killed, as a crash would (test_cluster.py stops it gently): no time to close the watches
    assert cluster.stop_component("kube-apiserver", grace=0) == "killed after 0s"
    cluster.start_component("kube-apiserver")
    # the pod ran on unharmed, and the agent's watch is back: it sees a new pod and a deletion
    after = cluster.container_status(ns, "steady")
    assert (after["containerID"], after["restartCount"], after["ready"]) == (before["containerID"], 0, True)
    cluster.create_pod(ns, "later", [{"name": "main", "image": "hfc/sh", "command": ["-c", "exec sleep 3600"]}])
    wait_for(lambda: cluster.pod(ns, "later")["status"].get("phase") == "Running", 40, "a pod made after the restart")
    cluster.api.delete("/api/v1/namespaces/%s/pods/steady" % ns)
    wait_for(lambda: _gone(cluster, ns, "steady"), 30, "the deleted pod to go")


def test_agent_sigterm_stops_every_pod_and_leaves_no_pod_namespace(cluster, ns, tmp_path):
    """Last: it stops the session's agent, and starts it again for whatever runs next."""
    for i in range(2):
        cluster.create_pod(ns, "p%d" % i, [{"name": "main", "image": "hfc/sh",
                                            "command": ["-c", "echo $$ > %s/pid%d; exec sleep 3600" % (tmp_path, i)]}])
    pids = wait_for(lambda: all((tmp_path / ("pid%d" % i)).exists() for i in range(2)) and
                    [int((tmp_path / ("pid%d" % i)).read_text()) for i in range(2)], 40, "both pods to run")
    assert len(cluster.pod_netns()) >= 2
    t0 = time.monotonic()
    try:
        assert cluster.stop_component("nodeagent", grace=30) == "stopped"
        assert time.monotonic() - t0 < 15
        assert cluster.pod_netns() == []
        for pid in pids:
            assert not os.path.exists("/proc/%d" % pid), "pod process %d outlived the agent" % pid
        links = os.popen("ip -o link show master hfbr0").read()
        assert not re.search(r": hfv[0-9]+@", links), links
        with open(cluster.daemons.log_path("nodeagent")) as f:
            assert re.search(r"stopped: \d+ pods", f.read())
    finally:
        if not cluster.daemons.is_running("nodeagent"):
            cluster.start_component("nodeagent")
    # the new agent takes the Node over, and runs the pods bound to it again
    cluster.wait_node_ready()
    wait_for(lambda: len(cluster.pod_netns()) >= 2, 40, "the pods running again under the new agent")


def test_a_deleted_pods_open_connections_are_closed_before_its_network_goes(cluster, ns):
    """A container's exit closes its sockets: the kernel sends a FIN on each open connection
    (a reset where a request was unread), and the client learns the connection is over, as
    with a real kubelet, which kills the containers before it tears down the pod's network.
    Torn down first, the pod's address is gone before those packets leave, and a client's
    keep-alive connection is left open towards nothing: its next request waits for its whole
    timeout."""
    import socket
    cluster.create_pod(ns, "closer", [{
        "name": "main", "image": "hfc/http:1", "ports": [{"containerPort": 8080}],
        "env": [{"name": "PORT", "value": "8080"}, {"name": "TERM_DELAY_MS", "value": "300"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}])
    wait_for(lambda: _cond(cluster.pod(ns, "closer"), "Ready") == "True", 60, "the pod to be Ready")
    ip = cluster.pod(ns, "closer")["status"]["podIP"]
    conns = []
    for _ in range(20):
        s = socket.create_connection((ip, 8080), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: closer\r\n\r\n")
        got = b""
        while not got.endswith(b"closer\n"):
            chunk = s.recv(4096)
            assert chunk, "the pod closed a keep-alive connection after one answer"
            got += chunk
        conns.append(s)
    cluster.api.delete("/api/v1/namespaces/%s/pods/closer" % ns)
    ended, left = 0, []
    for s in conns:
        s.settimeout(15)
        try:
            ended += s.recv(4096) == b""
        except ConnectionResetError:
            ended += 1
        except socket.timeout:
            left.append(s.getsockname()[1])
        finally:
            s.close()
    assert not left, "%d of %d keep-alive connections got neither a FIN nor a reset from the deleted pod" % (
        len(left), len(conns))
    assert ended == len(conns)


def test_requests_racing_a_deleted_pods_exit_through_its_cluster_ip_never_hang(cluster, ns):
    """Keep-alive clients of a Service's ClusterIP send requests every few milliseconds while its
    only pod is deleted (it serves 0.3 s after SIGTERM, then exits): each request is answered,
    or its connection ends (FIN or reset) at once. None waits: whatever the client sends
    around the exit, the pod's kernel answers it before the node agent removes the pod's
    network."""
    import socket
    import threading
    cluster.create_pod(ns, "racer", [{
        "name": "main", "image": "hfc/http:1", "ports": [{"containerPort": 8080}],
        "env": [{"name": "PORT", "value": "8080"}, {"name": "TERM_DELAY_MS", "value": "300"}],
        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}}],
        terminationGracePeriodSeconds=5)
    cluster.api.post("/api/v1/namespaces/%s/services" % ns, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "racer"},
        "spec": {"selector": {"app": "racer"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    cluster.api.patch("/api/v1/namespaces/%s/pods/racer" % ns, {"metadata": {"labels": {"app": "racer"}}})
    ip = cluster.api.get("/api/v1/namespaces/%s/services/racer" % ns)["spec"]["clusterIP"]

    def answers():
        try:
            return _http_get(ip, 80)[0] == 200
        except OSError:
            return False
    wait_for(answers, 60, "the ClusterIP to answer")
    hung, ended, answered, lock = [], [], [0], threading.Lock()
    stop_at = time.monotonic() + 20

    def client(k):
        s = socket.create_connection((ip, 80), timeout=10)
        try:
            while time.monotonic() < stop_at:
                try:
                    s.sendall(b"GET /%d HTTP/1.1\r\nHost: racer\r\n\r\n" % k)
                    got = b""
                    while not got.endswith(b"racer\n"):
                        chunk = s.recv(4096)
                        if not chunk:
                            raise ConnectionResetError("FIN")
                        got += chunk
                    with lock:
                        answered[0] += 1
                except (ConnectionResetError, BrokenPipeError):
                    with lock:
                        ended.append(k)
                    return
                except socket.timeout:
                    with lock:
                        hung.append(s.getsockname()[1])
                    return
                time.sleep(0.005 * (k % 7))
        finally:
            s.close()
    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(24)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    cluster.api.delete("/api/v1/namespaces/%s/pods/racer" % ns)
    for t in threads:
        t.join(40)
    assert not any(t.is_alive() for t in threads)
    assert answered[0] > 0
    assert not hung, "requests from local ports %s got no answer, FIN or reset within 10 s" % hung
    assert len(ended) == len(threads), "%d of %d connections outlived the pod" % (len(threads) - len(ended),
                                                                                len(threads))
