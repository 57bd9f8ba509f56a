"""The README's first command, `scripts/demo`, keeps working: its Kubernetes part
(scripts/demo_k8s.py, which `scripts/demo` runs after setup and the build) on the test cluster,
checked by what it prints and by what it leaves behind (nothing)."""
import os
import re
import subprocess

import netns

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def test_demo_scales_to_zero_wakes_and_cleans_up():
    before = set(netns.names())
    r = subprocess.run(["/usr/bin/python3", os.path.join(ROOT, "scripts", "demo_k8s.py")],
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert re.search(r"scaled to zero after [0-9.]+ s", out), out[-4000:]
    assert 'GET /healthz -> 200 {"ok":true}' in out and "replicas: 0" in out, out[-4000:]
    assert re.search(r"GET / -> 200 \([0-9]+ bytes\) after [0-9.]+ s", out), out[-4000:]
    for reason in ("ScaledToZero", "ScaledUp", "SwitchedToServe"):
        assert reason in out, reason
    assert 'release "holdfast" uninstalled' in out and "== done: everything stopped" in out
    made = re.search(r"network namespace (hfc-[0-9a-f]{8})", out).group(1)
    assert not [n for n in set(netns.names()) - before if n.startswith(made)], "left behind"
    work = re.search(r"kubeconfigs in (/\S+)/cluster/pki", out).group(1)
    assert not os.path.exists(work), "the demo's work directory %s is left behind" % work
