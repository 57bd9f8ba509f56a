"""spec.waitingPage on the real control plane: an ElastiService with the page enabled answers a
browser navigation through its Service's ClusterIP at zero with the page at once, the wake
scales the Deployment up, and once the pod is ready the browser's refresh reaches it; an API
client at zero is still held and answered by the pod; a waitingPage the API server lets through
but holdfast refuses surfaces as Ready=False InvalidSpec naming the field, and one outside the
CRD's bounds is refused by the API server.

The set-up is test_controller.py's, imported: one real test cluster per module (kube-proxy delay
200 ms), one holdfast per test, requests through the Service's ClusterIP, bounded waits, no
sanitizer report allowed.
"""
from test_controller import (  # noqa: F401 - fixtures are used by name
    ES_API, condition, create_es, elastiservice, holdfast, http_get, http_request, make_app, ns,
    replicas, resolver_slices, sim, wait_event, wait_mode, wait_replicas)
from hftest.kubeclient import wait_for

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def browser_get(host, port, path="/", timeout=30, connect_retry=15):
    """A browser's navigation through kube-proxy: (status, headers, body bytes); a refused
    connect is retried as http_get's is."""
    return http_request(host, port, path, timeout, connect_retry,
                        {"Accept": BROWSER_ACCEPT, "User-Agent": "Mozilla/5.0"})


def at_zero_with_page(sim, ns, page, image="test/http:1"):
    """Deployment `web` at 0 replicas (never started), its Service, and an ElastiService without
    triggers whose waitingPage is `page`: the controller enters proxy mode at once."""
    make_app(sim, ns, replicas=0, image=image)
    create_es(sim, ns, elastiservice(waitingPage=page))
    wait_mode(sim, ns, "proxy")
    wait_for(lambda: resolver_slices(sim, ns), timeout=10, what="resolver slice")
    return sim.cluster_ip(ns, "web")


def test_browser_at_zero_gets_the_waiting_page_through_the_cluster_ip_and_wakes_the_deployment(
        sim, ns, holdfast):
    hf = holdfast.start()
    # The pod listens 3 s after it starts: the first navigation is answered long before.
    ip = at_zero_with_page(sim, ns, {"enabled": True, "retryAfterSeconds": 1},
                           image="test/http:3s")
    code, headers, body = browser_get(ip, 80, "/shop")
    assert code == 503, (code, headers, body)
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["retry-after"] == "1" and headers["refresh"] == "1"
    assert headers["cache-control"] == "no-store"
    assert b'<meta http-equiv="refresh" content="1">' in body
    assert ("<strong>web</strong> (namespace %s) is starting" % ns).encode() in body, body
    # The wake went on without any held request.
    wait_replicas(sim, ns, 1)
    assert wait_event(sim, ns, "ScaledUp")[0]["type"] == "Normal"
    assert hf.metric("holdfast_waiting_pages_total", namespace=ns, service="web") >= 1

    # The browser's refresh: the page while the pod starts, then the pod itself.
    def refreshed():
        code, _, body = browser_get(ip, 80, "/shop")
        assert code in (200, 503), (code, body)
        return code == 200 and body
    body = wait_for(refreshed, timeout=60, interval=1, what="the refresh answered by the pod",
                    retry_on=(OSError,))
    assert body.startswith(b"web-"), body
    wait_mode(sim, ns, "serve")


def test_an_api_client_at_zero_is_held_and_answered_by_the_pod_with_the_page_enabled(
        sim, ns, holdfast):
    hf = holdfast.start()
    ip = at_zero_with_page(sim, ns, {"enabled": True})
    code, _, body = http_get(ip, 80, "/api")  # no Accept: an API client
    assert code == 200 and body.startswith("web-"), (code, body)
    assert replicas(sim, ns) == 1
    assert hf.metric("holdfast_waiting_pages_total", namespace=ns, service="web") == 0


def test_an_invalid_waiting_page_is_ready_false_invalid_spec_naming_the_field(sim, ns, holdfast):
    holdfast.start()
    make_app(sim, ns, replicas=0)
    # 35000 characters (within the CRD's maxLength, which counts characters) of two bytes each:
    # 70000 bytes, more than holdfast takes.
    create_es(sim, ns, elastiservice(waitingPage={"enabled": True, "html": "\u00e9" * 35000}))
    c = wait_for(lambda: (condition(sim, ns, "Ready") or {}).get("reason") == "InvalidSpec"
                 and condition(sim, ns, "Ready"), timeout=15, what="Ready False InvalidSpec")
    assert c["status"] == "False", c
    assert c["message"] == "spec.waitingPage.html: 70000 bytes, more than the 65536 allowed", c


def test_a_waiting_page_outside_the_crd_bounds_is_refused_by_the_api_server(sim, ns):
    for page, field in (({"enabled": True, "retryAfterSeconds": 0}, "retryAfterSeconds"),
                        ({"enabled": True, "retryAfterSeconds": 3601}, "retryAfterSeconds"),
                        ({"enabled": "yes"}, "enabled"),
                        ({"html": ""}, "html")):
        code, body = sim.request("POST", "%s/namespaces/%s/elastiservices" % (ES_API, ns),
                                 elastiservice(waitingPage=page))
        assert code == 422, (page, code, body)
        assert "spec.waitingPage." + field in str(body), (page, body)
