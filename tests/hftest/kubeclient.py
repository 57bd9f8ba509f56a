"""kubeclient: what every test client of a Kubernetes API server shares (standard library only):
the one poller (wait_for), the API's verbs over a `request` method (RestVerbs) and the error
they raise (ApiError). tests/hftest/realcluster.py builds its client of the test cluster on them.

    from hftest.kubeclient import wait_for
    wait_for(lambda: sim.get(path)["status"].get("readyReplicas") == 2, what="2 ready")
"""
import json
import time


class WaitTimeout(AssertionError):
    pass


def wait_for(predicate, timeout=20.0, interval=0.05, what="condition", retry_on=(Exception,),
             error=WaitTimeout):
    """Poll predicate() until it returns a truthy value (returned) or raise error(message) after
    `timeout` seconds. Exceptions of the classes in retry_on raised by predicate count as 'not
    yet' (the last one is reported); any other propagates at once (retry_on=() for none).
    error is WaitTimeout unless the caller's own failure fits better (pytest.fail works too)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = predicate()
            if v:
                return v
        except retry_on as e:
            last_exc = e
        if time.monotonic() >= deadline:
            raise error("timed out after %.1fs waiting for %s%s" % (
                timeout, what, "" if last_exc is None else " (last error: %r)" % (last_exc,)))
        time.sleep(interval)


class ApiError(Exception):
    def __init__(self, code, body):
        super().__init__("HTTP %d: %s" % (code, body))
        self.code = code
        self.body = body        # the decoded Status object (or raw text)


class RestVerbs:
    """The API's verbs over `self.request(method, path, body, content_type, ...) -> (code, obj)`."""

    def _ok(self, method, path, body=None, content_type="application/json"):
        code, obj = self.request(method, path, body, content_type)
        if code >= 300:
            raise ApiError(code, obj)
        return obj

    def get(self, path):
        return self._ok("GET", path)

    def create(self, path, obj):
        return self._ok("POST", path, obj)

    def update(self, path, obj):
        return self._ok("PUT", path, obj)

    def patch(self, path, patch, kind="merge"):
        ctype = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
                 "strategic": "application/strategic-merge-patch+json"}[kind]
        return self._ok("PATCH", path, patch, ctype)

    def delete(self, path, body=None):
        return self._ok("DELETE", path, body)

    def exists(self, path):
        code, _ = self.request("GET", path)
        return code == 200


def decode(data):
    """An answer's body: the JSON object, or the text when it is not JSON."""
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")
