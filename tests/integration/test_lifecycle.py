"""Clients that give up, graceful shutdown, the metrics exposition, and the command line."""
import json
import signal
import subprocess

from hftest.holdfast import holdfast_bin
from hftest.http1 import Reader, connect, get_request, http_get
from hftest.kubeclient import wait_for
from hftest.net import hp
from hflib import service


def test_client_disconnecting_while_held_is_counted_cancelled_and_others_unaffected(
        holdfast, addrs, backend_cmd, tmp_path):
    listen, back = addrs.listener(), addrs.backend()
    gate = tmp_path / "gate"
    hf = holdfast.start({"services": [service(
        "svc", [listen], [back], backend_cmd("http", back, "after", gate=gate))]})
    socks = [connect(listen) for _ in range(4)]
    try:
        for i, s in enumerate(socks):
            s.sendall(get_request(f"/c/{i}"))
        wait_for(lambda: hf.metric("holdfast_held_connections", service="svc") == 4,
                 what="four held")
        socks[1].close()
        wait_for(lambda: hf.metric("holdfast_requests_total", service="svc",
                                   outcome="cancelled") == 1, what="one cancelled")
        assert hf.metric("holdfast_held_connections", service="svc") == 3
        gate.write_text("go")
        for i in (0, 2, 3):
            r = Reader(socks[i]).read_response()
            assert r.status == 200, r
            assert (r.json()["backend"], r.json()["path"]) == ("after", f"/c/{i}")
        # The backend never saw the cancelled request.
        assert hf.metric("holdfast_requests_total", service="svc", outcome="forwarded") == 3
        assert hf.metric("holdfast_requests_total", service="svc", outcome="cancelled") == 1
    finally:
        for s in socks:
            s.close()


def test_sigterm_lets_held_and_relaying_connections_complete_within_drain_timeout(
        holdfast, addrs, backend_cmd, tmp_path):
    ready_listen, ready_back = addrs.listener(), addrs.backend()
    cold_listen, cold_back = addrs.listener(), addrs.backend()
    gate = tmp_path / "gate"
    hf = holdfast.start({"services": [
        service("warm", [ready_listen], [ready_back], backend_cmd("http", ready_back, "warm")),
        service("cold", [cold_listen], [cold_back],
                backend_cmd("http", cold_back, "cold", gate=gate)),
    ]}, drain_timeout=30)
    # Wake "warm" so it is relaying, then start a slow response through it.
    assert http_get(ready_listen, "/warmup").json()["backend"] == "warm"
    relaying = connect(ready_listen)
    relaying.sendall(get_request("/slow?ms=1500"))
    held = connect(cold_listen)
    held.sendall(get_request("/held"))
    try:
        wait_for(lambda: hf.metric("holdfast_held_connections", service="cold") == 1,
                 what="held on cold")
        wait_for(lambda: hf.metric("holdfast_requests_total", service="warm",
                                   outcome="forwarded") == 2, what="slow request forwarded")
        hf.signal(signal.SIGTERM)
        hf.wait_log("draining: listeners closed, finishing held and relayed connections")
        assert hf.metric("holdfast_draining") == 1
        # New connections are no longer accepted...
        try:
            with connect(cold_listen, timeout=5) as s:
                s.sendall(get_request("/late"))
                s.settimeout(5)
                refused = s.recv(1) == b""
        except OSError:
            refused = True
        assert refused
        # ... while the ones in flight finish: the relayed one, and the held one once woken.
        gate.write_text("go")
        r = Reader(relaying).read_response()
        assert r.status == 200 and r.json()["path"] == "/slow?ms=1500", r
        r = Reader(held).read_response()
        assert r.status == 200 and r.json()["backend"] == "cold", r
    finally:
        relaying.close()
        held.close()
    assert hf.wait_exit(40) == 0
    assert hf.log_lines("drained: every connection finished")
    assert not hf.log_lines("drain timeout: closing the connections left")


def test_metrics_pass_promtool_check_after_traffic(holdfast, addrs, backend_cmd):
    listen, back = addrs.listener(), addrs.backend()
    probe_listen = addrs.listener()
    hf = holdfast.start({"services": [
        service("svc", [listen], [back], backend_cmd("http", back, "m")),
        service("probe-only", [probe_listen], [addrs.backend()],
                probeResponse=[{"path": {"type": "Exact", "value": "/healthz"}, "response": {}}]),
    ]})
    for i in range(5):
        assert http_get(listen, f"/m/{i}").status == 200
    assert http_get(probe_listen, "/healthz").status == 200
    text = hf.metrics_text()
    assert 'holdfast_requests_total{namespace="default",service="svc",outcome="forwarded"} 5' \
        in text
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "" and out.stderr.strip() == "", out.stdout + out.stderr


def test_services_without_traffic_export_no_series(holdfast, addrs, backend_cmd):
    """A service's series appear on first use (a request, a wake, a held connection), as a
    labelled child does in client libraries: 10,000 idle ElastiServices cost no scrape size."""
    listen, back = addrs.listener(), addrs.backend()
    hf = holdfast.start({"services": [
        service("used", [listen], [back], backend_cmd("http", back, "u")),
        service("idle", [addrs.listener()], [addrs.backend()]),
    ]})
    families = ("holdfast_requests_total", "holdfast_held_connections", "holdfast_wakes_total",
                "holdfast_hold_duration_seconds_count", "holdfast_cold_start_seconds_count",
                "holdfast_wake_to_scale_seconds_count")

    def series(text, svc):  # the data plane's families (standalone mode adds its own few)
        return [f for f in families if '%s{namespace="default",service="%s"' % (f, svc) in text]
    assert series(hf.metrics_text(), "idle") == [] and series(hf.metrics_text(), "used") == []
    assert http_get(listen, "/x").status == 200
    text = hf.metrics_text()
    assert series(text, "idle") == []
    assert series(text, "used") == list(families)
    out = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def run_holdfast(*args, timeout=30):
    return subprocess.run([holdfast_bin(), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_bad_config_exits_2_with_one_message_naming_file_and_json_path(tmp_path, addrs):
    listen = addrs.listener()
    cases = [
        ({"services": [{"name": "a", "listen": [hp(listen)], "backends": ["127.0.1.9:1"],
                        "probeResponse": [{"path": {"type": "Bogus", "value": "/"}}]}]},
         "services[0].probeResponse[0].path.type"),
        ({"services": [{"name": "a", "listen": [hp(listen)], "backends": ["127.0.1.9:1"],
                        "surprise": 1}]}, ["services[0]", '"surprise"']),
        ({"services": [{"name": "a", "listen": [hp(listen)], "backends": ["127.0.1.9:1"]}],
          "limits": {"headTimeoutSeconds": 0}}, ["limits.headTimeoutSeconds"]),
    ]
    for i, (cfg, words) in enumerate(cases):
        f = tmp_path / f"bad{i}.json"
        f.write_text(json.dumps(cfg))
        out = run_holdfast("run", "--config", str(f), "--admin-listen", "127.0.0.1:0")
        assert out.returncode == 2, out
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert str(f) in lines[0], lines[0]
        for w in words:
            assert w in lines[0], lines[0]
    f = tmp_path / "broken.json"
    f.write_text('{"services": [\n  {"name": }\n]}')
    out = run_holdfast("run", "--config", str(f), "--admin-listen", "127.0.0.1:0")
    assert out.returncode == 2 and str(f) in out.stderr, out
    out = run_holdfast("run", "--config", str(tmp_path / "missing.json"))
    assert out.returncode == 2 and "missing.json" in out.stderr, out


def test_nul_character_in_a_config_string_exits_2_naming_file_and_json_path(tmp_path, addrs):
    """"a\u0000b" must not run a service named "a": every string of the file is checked."""
    listen = addrs.listener()

    def svc(**extra):
        s = {"name": "a", "listen": [hp(listen)], "backends": ["127.0.1.9:1"]}
        s.update(extra)
        return {"services": [s]}

    cases = [
        (svc(name="a\x00b"), "services[0].name"),
        (svc(wake={"command": ["/bin/sh", "-c", "exit 0\x00; echo never"]}),
         "services[0].wake.command[2]"),
        (svc(probeResponse=[{"headers": [{"name": "X-LB", "value": "yes\x00"}],
                             "response": {}}]),
         "services[0].probeResponse[0].headers[0].value"),
    ]
    for i, (cfg, where) in enumerate(cases):
        f = tmp_path / f"nul{i}.json"
        f.write_text(json.dumps(cfg))  # json.dumps writes the NUL as \u0000
        assert "\\u0000" in f.read_text()
        out = run_holdfast("run", "--config", str(f), "--admin-listen", "127.0.0.1:0", timeout=10)
        assert out.returncode == 2, out
        lines = out.stderr.strip().splitlines()
        assert lines == [f"holdfast: {f}: {where}: must not contain a NUL character (\\u0000)"], \
            out.stderr


def test_bad_flag_exits_2_with_a_message(tmp_path):
    for args, word in ((["run", "--workers", "0", "--config", "x"], "--workers"),
                       (["run", "--bogus"], "--bogus"),
                       (["run", "--log-level", "loud", "--config", "x"], "--log-level"),
                       (["frobnicate"], "frobnicate")):
        out = run_holdfast(*args)
        assert out.returncode == 2, (args, out)
        assert word in out.stderr.splitlines()[0], (args, out.stderr)


def test_version_prints_the_version():
    out = run_holdfast("version")
    assert out.returncode == 0
    assert out.stdout.startswith("holdfast ") and out.stdout.split()[1][0].isdigit(), out.stdout

