"""The Grafana dashboard, the alert rules and docs/operating.md name only metrics holdfast exports.

The exported metrics are read from the real binary ($HOLDFAST_BIN, else <repo>/build/holdfast):
standalone mode on a loopback port for the data plane's families, and Kubernetes mode against
the test cluster's real API server for the controller's (holdfast_leader,
holdfast_scale_ups_total, ...; docs/test-cluster.md, needs root). A histogram family
`x` covers `x_bucket`, `x_sum` and `x_count`.

Run with Debian's python3: /usr/bin/python3 -m pytest tests/docs
"""
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from hftest import promtext
from hftest.hfk8s import HoldfastK8s
from hftest.holdfast import holdfast_bin
from hftest.net import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

DASHBOARD = os.path.join(REPO, "docs", "grafana", "holdfast-dashboard.json")
ALERTS = os.path.join(REPO, "docs", "alerts.yaml")
OPERATING = os.path.join(REPO, "docs", "operating.md")
CRD_FILE = os.path.join(REPO, "crds", "elastiservice.yaml")
METRIC_RE = re.compile(r"\bholdfast_[a-zA-Z0-9_]*[a-zA-Z0-9]")
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------- what holdfast exports


families = promtext.families  # {family: type} from the # TYPE lines of a /metrics page


def series_names(fams):
    """Every name a query may use: the families, plus _bucket/_sum/_count of histograms."""
    names = set(fams)
    for name, kind in fams.items():
        if kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        elif kind == "summary":
            names |= {name + "_sum", name + "_count"}
    return names


def _get(url, timeout=2):
    with _opener.open(url, timeout=timeout) as r:
        return r.status, r.read().decode()


@pytest.fixture(scope="module")
def standalone_metrics(tmp_path_factory):
    work = tmp_path_factory.mktemp("standalone")
    ip = "127.0.6.%d" % (os.getpid() % 250 + 2)  # a loopback address of its own
    backend = "%s:%d" % (ip, free_port(ip))
    cfg = work / "hf.json"
    cfg.write_text(json.dumps({"services": [
        {"namespace": "docs", "name": "web", "listen": ["%s:0" % ip], "backends": [backend],
         "wake": {"command": ["/bin/true"]}}],
        "shared": {"listen": ["%s:0" % ip]}}))
    admin = "%s:%d" % (ip, free_port(ip))
    with open(work / "stderr", "wb") as err:
        proc = subprocess.Popen([holdfast_bin(), "run", "--config", str(cfg), "--admin-listen", admin,
                                 "--workers", "1"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, "holdfast exited: %s" % (work / "stderr").read_text()
            try:
                code, text = _get("http://%s/metrics" % admin)
                if code == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "no /metrics on %s" % admin
            time.sleep(0.05)
        return text
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def kubernetes_metrics(tmp_path_factory):
    from hftest.realcluster import RealCluster
    sim = RealCluster(tmp_path_factory.mktemp("cluster"))
    sim.start()  # this thread, and holdfast, in the cluster's network namespace until stop()
    try:
        sim.kubectl("apply", "-f", CRD_FILE)
        hf = HoldfastK8s(sim, tmp_path_factory.mktemp("holdfast"), namespace="default")
        hf.start()
        try:
            return hf.metrics_text()
        finally:
            hf.stop()
    finally:
        left = sim.stop()
        assert left == [], "left behind by the cluster: %s" % left


@pytest.fixture(scope="module")
def exported(standalone_metrics, kubernetes_metrics):
    fams = families(standalone_metrics)
    fams.update(families(kubernetes_metrics))
    return fams


# ---------------------------------------------------------------- what the docs reference


def panel_exprs(panels):
    for p in panels:
        for t in p.get("targets", []):
            if "expr" in t:
                yield p.get("title", "?"), t["expr"]
        yield from panel_exprs(p.get("panels", []))  # rows


def dashboard_refs(dash):
    """(where, metric) for every holdfast_* name in panel expressions and templating queries."""
    refs = []
    for title, expr in panel_exprs(dash["panels"]):
        names = METRIC_RE.findall(expr)
        assert names, "panel %r: expression names no holdfast metric: %s" % (title, expr)
        refs += [("panel %r" % title, n) for n in names]
    for var in dash.get("templating", {}).get("list", []):
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        refs += [("variable %r" % var.get("name"), n) for n in METRIC_RE.findall(q)]
        refs += [("variable %r" % var.get("name"), n) for n in METRIC_RE.findall(var.get("definition", ""))]
    return refs


def alert_refs(text):
    """(where, metric) for every holdfast_* name in an `expr:` of the rules file."""
    refs, current, in_expr = [], "?", False
    for line in text.splitlines():
        m = re.match(r"\s*- alert: (\S+)", line)
        if m:
            current = m.group(1)
        m = re.match(r"(\s*)expr:\s*(.*)$", line)
        if m:
            in_expr, indent = True, len(m.group(1))
            refs += [("alert %s" % current, n) for n in METRIC_RE.findall(m.group(2))]
            continue
        if in_expr:
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                in_expr = False
            else:
                refs += [("alert %s" % current, n) for n in METRIC_RE.findall(line)]
    return refs


def unknown(refs, names):
    return sorted({"%s: %s" % (where, n) for where, n in refs if n not in names})


# ---------------------------------------------------------------- tests


def test_both_modes_were_read(exported):
    # the reading works: data plane and controller families are both there
    assert exported.get("holdfast_requests_total") == "counter"
    assert exported.get("holdfast_hold_duration_seconds") == "histogram"
    assert exported.get("holdfast_leader") == "gauge"
    assert exported.get("holdfast_scale_ups_total") == "counter"


def test_dashboard_is_grafana_json():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    assert 36 <= dash["schemaVersion"] <= 41
    assert dash["uid"] and dash["title"]
    names = [v["name"] for v in dash["templating"]["list"]]
    assert "namespace" in names and "service" in names
    ids = []

    def walk(panels):
        for p in panels:
            ids.append(p["id"])
            assert {"h", "w", "x", "y"} <= set(p["gridPos"]), p["title"]
            for t in p.get("targets", []):
                assert t["refId"] and t["expr"].strip(), p["title"]
            walk(p.get("panels", []))
    walk(dash["panels"])
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    # every per-service panel query honours the variables
    for title, expr in panel_exprs(dash["panels"]):
        if re.search(r"holdfast_(requests_total|held_connections|held_bytes|wakes_total|hold_duration"
                     r"|cold_start|upstream_connect)\b", expr):
            assert '$namespace' in expr and '$service' in expr, "panel %r ignores $namespace/$service" % title


def test_dashboard_metrics_exist(exported):
    with open(DASHBOARD) as f:
        dash = json.load(f)
    refs = dashboard_refs(dash)
    assert len(refs) > 20
    missing = unknown(refs, series_names(exported))
    assert not missing, "the dashboard references metrics holdfast does not export:\n" + "\n".join(missing)


def test_alert_metrics_exist(exported):
    with open(ALERTS) as f:
        refs = alert_refs(f.read())
    assert len(refs) >= 8
    missing = unknown(refs, series_names(exported))
    assert not missing, "alert rules reference metrics holdfast does not export:\n" + "\n".join(missing)


def test_alert_rules_pass_promtool():
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool not installed (Debian: apt-get install prometheus)")
    r = subprocess.run([promtool, "check", "rules", ALERTS], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_operating_doc_lists_exactly_the_exported_metrics(exported):
    with open(OPERATING) as f:
        text = f.read()
    mentioned = set(METRIC_RE.findall(text))
    missing = unknown([("docs/operating.md", n) for n in mentioned], series_names(exported))
    assert not missing, "docs/operating.md names metrics holdfast does not export:\n" + "\n".join(missing)
    undocumented = sorted(set(exported) - mentioned)
    assert not undocumented, "exported but not in docs/operating.md: %s" % undocumented


def test_operating_doc_carries_the_alert_rules():
    with open(ALERTS) as f:
        rules = f.read()
    with open(OPERATING) as f:
        text = f.read()
    body = rules.split("groups:", 1)[1]
    assert "groups:" + body in text, "docs/operating.md's rules block differs from docs/alerts.yaml"
