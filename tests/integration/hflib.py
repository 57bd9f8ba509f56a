"""What the integration tests share beyond the hftest package: the helper backend
(backends/backend.py) and standalone service entries with test-friendly defaults. The holdfast
process wrapper is hftest.holdfast, the HTTP/1.1 clients hftest.http1, addresses hftest.net, the
poller hftest.kubeclient.wait_for."""
import os

from hftest.net import hp

HERE = os.path.dirname(os.path.abspath(__file__))
BACKEND = os.path.join(HERE, "backends", "backend.py")


def service(name, listen, backends, wake=None, **extra):
    """A standalone service entry with test-friendly defaults (fast probes, short holds)."""
    s = {
        "namespace": "default",
        "name": name,
        "listen": [hp(a) for a in listen],
        "backends": [hp(a) for a in backends],
        "readinessPeriodMs": 50,
        "holdTimeoutSeconds": 30,
    }
    if wake:
        s["wake"] = {"command": wake}
    s.update(extra)
    return s
