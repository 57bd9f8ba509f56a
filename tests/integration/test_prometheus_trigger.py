"""Prometheus triggers (controller/prom) against a real Prometheus (Debian's `prometheus` package).

Each test runs tests/tools/promquery_probe (directory from HOLDFAST_TOOLS_DIR, default tests/tools
beside $HOLDFAST_BIN, else <repo>/build/tests/tools), which parses a trigger with
prom_trigger_parse, sends its query and/or its uptime query with prom_query, and prints one JSON
line per answer: {"kind", "query", "status": prom_status_reason, "value", "reason"}.

One Prometheus serves the module (`prom`, scraping itself as container="prometheus" and an
Exporter whose gauges the tests set); tests about a dead, frozen or restarted Prometheus start
their own (`spare`). Header tests use a FakePrometheus that records requests. Fixtures live in
tests/hftest/promfix.py. Every wait is bounded polling; the probe's stderr must hold no sanitizer
report.
"""
import datetime
import json
import os
import subprocess
import time

import pytest

from hftest.promfix import (FakePrometheus, Exporter, Prometheus, PromfixError,
                     prometheus_version, vector_answer, wait_for, whole_second)

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

_BUILD = os.path.dirname(os.environ["HOLDFAST_BIN"]) if os.environ.get("HOLDFAST_BIN") else os.path.join(REPO, "build")
TOOLS = os.environ.get("HOLDFAST_TOOLS_DIR", os.path.join(_BUILD, "tests", "tools"))
PROBE = os.path.join(TOOLS, "promquery_probe")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
METRIC = "holdfast_test_rps"


def uptime_query(filter_, cooldown):
    """KubeElasti's uptime check, as DESIGN.md states it."""
    return "min_over_time((max(up{%s}) or vector(0))[%ds:])" % (filter_, cooldown)


def run_probe(trigger, *args, server=None, authorization=None, timeout=30):
    """Runs the probe; returns {"trigger": line, "query": line, "uptime": line} (those printed)."""
    if not os.path.exists(PROBE):
        pytest.fail("%s is missing: build it (ninja -C build) or set HOLDFAST_TOOLS_DIR" % PROBE)
    argv = [PROBE, "--trigger", json.dumps(trigger)] + list(args)
    if server is not None:
        argv += ["--server", server]
    if authorization is not None:
        argv += ["--authorization", authorization]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # curl honours them
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if any(m in out.stderr for m in SANITIZER_MARKERS):
        pytest.fail("sanitizer report from promquery_probe:\n" + out.stderr)
    assert out.returncode in (0, 1), "probe exited %d; stderr:\n%s" % (out.returncode, out.stderr)
    lines = {}
    for line in out.stdout.splitlines():
        obj = json.loads(line)
        lines[obj["kind"]] = obj
    return lines


def trigger(server=None, query=METRIC, threshold="0.5", **metadata):
    md = {"query": query, "threshold": threshold}
    if server is not None:
        md["serverAddress"] = server
    md.update(metadata)
    return {"type": "prometheus", "metadata": md}


@pytest.fixture(scope="module")
def exporter():
    with Exporter() as exp:
        yield exp


@pytest.fixture(scope="module")
def prom(tmp_path_factory, exporter):
    try:
        p = Prometheus(exporter=exporter, workdir=tmp_path_factory.mktemp("prometheus"))
    except PromfixError as e:
        pytest.fail(str(e), pytrace=False)
    with p:
        yield p


@pytest.fixture
def spare(tmp_path):
    """Starts extra Prometheus servers (no exporter) for this test; all stopped at teardown."""
    started = []

    def start(**kw):
        p = Prometheus(workdir=tmp_path / ("prometheus-%d" % len(started)), start=False, **kw)
        started.append(p)
        return p.start()

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def fake():
    with FakePrometheus() as f:
        yield f


def serve(prom, exporter, labels, value):
    """Sets the exporter's gauge and waits until a query at holdfast's whole-second time sees it."""
    exporter.set(METRIC, value, labels=labels)
    sel = "%s{%s}" % (METRIC, ",".join('%s="%s"' % kv for kv in labels.items()))
    prom.wait_for_value(sel, value, timeout=15, at=whole_second)
    return sel


def test_prometheus_is_debians():
    assert prometheus_version().startswith("2."), "Debian bookworm ships Prometheus 2.42"


@pytest.mark.parametrize("value,threshold", [(0.2, "0.5"), (3.5, "0.5"), (0.75, 1)],
                         ids=["below", "above", "numeric-threshold"])
def test_trigger_query_answers_the_exporters_value(prom, exporter, value, threshold):
    service = "value-%s-%s" % (value, threshold)
    sel = serve(prom, exporter, {"service": service}, value)
    ans = run_probe(trigger(prom.url, sel, threshold))
    assert ans["trigger"]["threshold"] == float(threshold)
    assert ans["query"]["status"] == "QueryOK", ans
    assert ans["query"]["value"] == value
    assert ans["query"]["reason"] == ""
    # and it follows the exporter: a new value is what the next query answers
    serve(prom, exporter, {"service": service}, value * 10)
    assert run_probe(trigger(prom.url, sel, threshold))["query"]["value"] == value * 10


def test_empty_result_is_empty_result(prom):
    sel = '%s{service="nobody-serves-this"}' % METRIC
    assert prom.value(sel) is None
    ans = run_probe(trigger(prom.url, sel))["query"]
    assert ans["status"] == "EmptyResult", ans
    assert ans["value"] is None
    assert "empty" in ans["reason"]


def test_several_series_are_multiple_series(prom, exporter):
    for s in ("multi-a", "multi-b"):
        exporter.set(METRIC, 1, labels={"service": s})
    sel = '%s{service=~"multi-a|multi-b"}' % METRIC
    wait_for(lambda: len(prom.series(sel, at=whole_second())) == 2, 15, 0.2, "two series")
    ans = run_probe(trigger(prom.url, sel))["query"]
    assert ans["status"] == "MultipleSeries", ans
    assert "2 series" in ans["reason"]
    # the sum of the same series is one series: a value again
    ok = run_probe(trigger(prom.url, "sum(%s)" % sel))["query"]
    assert (ok["status"], ok["value"]) == ("QueryOK", 2)


def test_invalid_promql_is_prometheus_error_with_its_message(prom):
    bad = "sum(%s" % METRIC
    message = prom.query(bad)["error"]
    assert "parse error" in message
    ans = run_probe(trigger(prom.url, bad))["query"]
    assert ans["status"] == "PrometheusError", ans
    assert "HTTP 400" in ans["reason"]
    assert message in ans["reason"]


def test_infinite_value_is_infinite_value(prom, exporter):
    sel = serve(prom, exporter, {"service": "infinite"}, float("inf"))
    ans = run_probe(trigger(prom.url, sel))["query"]
    assert ans["status"] == "InfiniteValue", ans


def test_killed_prometheus_is_unreachable(spare):
    p = spare(wait_scrapes=False)
    t = trigger(p.url, "vector(1)")
    assert run_probe(t)["query"]["status"] == "QueryOK"
    p.kill()
    ans = run_probe(t, "--query", "--uptime", "2")
    for kind in ("query", "uptime"):
        assert ans[kind]["status"] == "PrometheusUnreachable", ans
        assert ans[kind]["reason"].startswith("no answer from Prometheus")


def test_frozen_prometheus_times_out_as_unreachable(spare):
    p = spare(wait_scrapes=False)
    t = trigger(p.url, "vector(1)")
    assert run_probe(t)["query"]["status"] == "QueryOK"
    p.pause()  # the kernel still accepts the connection; nothing ever answers
    try:
        ans = run_probe(t)["query"]
    finally:
        p.resume()
    assert ans["status"] == "PrometheusUnreachable", ans
    assert "timed out" in ans["reason"].lower()


def test_uptime_with_the_default_filter_is_one_once_up_for_the_cooldown(prom):
    t = trigger(prom.url)  # no uptimeFilter: container="prometheus"
    want = uptime_query('container="prometheus"', 3)

    def healthy():
        ans = run_probe(t, "--uptime", "3")["uptime"]
        assert ans["query"] == want
        assert ans["status"] == "QueryOK", ans
        return ans["value"] == 1

    wait_for(healthy, 20, 0.5, "the uptime check to answer 1")


def test_uptime_with_a_filter_matching_nothing_is_zero(prom):
    wait_for(lambda: run_probe(trigger(prom.url), "--uptime", "2")["uptime"]["value"] == 1, 20, 0.5,
             "the default filter to answer 1")
    ans = run_probe(trigger(prom.url, uptimeFilter='job="nope"'), "--uptime", "2")["uptime"]
    assert ans["query"] == uptime_query('job="nope"', 2)
    assert (ans["status"], ans["value"]) == ("QueryOK", 0), ans  # answered, and unhealthy


def test_uptime_cooldown_zero_is_sent_as_one_second(prom):
    # "[0s:]" is a PromQL error ("duration must be greater than 0"), not an answer
    assert prom.query(uptime_query('container="prometheus"', 0))["status"] == "error"
    ans = run_probe(trigger(prom.url), "--uptime", "0")["uptime"]
    assert ans["query"] == uptime_query('container="prometheus"', 1)
    assert (ans["status"], ans["value"]) == ("QueryOK", 1), ans


def test_uptime_after_a_recent_restart_is_zero(spare):
    p = spare()
    t = trigger(p.url)
    wait_for(lambda: run_probe(t, "--uptime", "2")["uptime"]["value"] == 1, 20, 0.5,
             "the uptime check to answer 1 before the restart")
    p.restart()  # same address, fresh TSDB: a new Prometheus pod without a persistent volume
    # up now, also at the whole second holdfast asks at...
    p.wait_for_value('up{container="prometheus"}', 1, timeout=10, at=whole_second)
    ans = run_probe(t, "--uptime", "30")["uptime"]
    assert p.uptime() < 30
    assert ans["query"] == uptime_query('container="prometheus"', 30)
    assert (ans["status"], ans["value"]) == ("QueryOK", 0), ans  # ...but not for the cooldown


def test_trigger_headers_and_default_authorization_are_sent(fake):
    fake.answer({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"service": "web"}, "value": [time.time(), "0.125"]}]}})
    t = trigger(query="sum(rate(http_requests_total[1m]))",
                headers={"X-Scope-OrgID": "tenant-a", "X-Extra": "yes"})  # no serverAddress
    before = int(time.time())
    ans = run_probe(t, "--query", "--uptime", "5", server=fake.url + "/",
                    authorization="Bearer default-token")
    after = int(time.time())
    assert ans["trigger"]["server"] == fake.url
    assert (ans["query"]["status"], ans["query"]["value"]) == ("QueryOK", 0.125), ans
    reqs = fake.wait_requests(2)
    assert sorted(r.query["query"] for r in reqs) == sorted(
        ["sum(rate(http_requests_total[1m]))", uptime_query('container="prometheus"', 5)])
    for r in reqs:
        assert (r.method, r.path) == ("GET", "/api/v1/query")
        assert r.header("X-Scope-OrgID") == ["tenant-a"]
        assert r.header("X-Extra") == ["yes"]
        assert r.header("Authorization") == ["Bearer default-token"]
        at = datetime.datetime.strptime(r.query["time"], "%Y-%m-%dT%H:%M:%SZ")
        assert before <= at.replace(tzinfo=datetime.timezone.utc).timestamp() <= after


def test_trigger_authorization_and_server_win_over_the_defaults(fake):
    t = trigger(fake.url, headers={"authorization": "Basic dXNlcjpwdw=="})
    ans = run_probe(t, server="http://127.0.0.1:1", authorization="Bearer default-token")
    assert ans["query"]["status"] == "QueryOK", ans
    (r,) = fake.wait_requests(1)
    assert r.header("Authorization") == ["Basic dXNlcjpwdw=="]


@pytest.mark.parametrize("body,status", [
    (vector_answer("not-a-number"), "NotANumber"),
    ("<html>a proxy's login page</html>", "BadResponse"),
], ids=["not-a-number", "not-json"])
def test_answers_a_real_prometheus_never_gives(fake, body, status):
    fake.answer(body)
    ans = run_probe(trigger(fake.url))["query"]
    assert ans["status"] == status, ans
    assert ans["value"] is None


def test_http_error_without_json_is_prometheus_error(fake):
    fake.answer("upstream connect error", status=503)
    ans = run_probe(trigger(fake.url))["query"]
    assert ans["status"] == "PrometheusError", ans
    assert "HTTP 503" in ans["reason"]


def test_a_header_with_an_empty_value_is_sent_empty(fake):
    t = trigger(fake.url, headers={"X-Empty": "", "Accept": ""})
    assert run_probe(t)["query"]["status"] == "QueryOK"
    (r,) = fake.wait_requests(1)
    assert r.header("X-Empty") == [""]
    assert r.header("Accept") == [""]  # replaced, not dropped
