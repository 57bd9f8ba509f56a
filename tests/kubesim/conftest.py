"""Fixtures for the kubesim fidelity tests.

- cluster: one kubesim for the whole session (tests isolate themselves by namespace).
- ns:      a fresh namespace in `cluster`.
- make_sim: start a dedicated kubesim with its own flags (fault tests); stopped at teardown,
            and the test fails if any pod process outlives it."""
import itertools
import os
import sys
import textwrap

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from simctl import KubeSim  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3"
HTTPSERVER = os.path.join(HERE, "testdata", "httpserver.py")

IMAGES = {
    "kubesim/http:1": {"argv": [PY, HTTPSERVER]},
    "kubesim/http:slow": {"argv": [PY, HTTPSERVER], "startDelayMs": 400},
    "kubesim/http:stubborn": {"argv": [PY, HTTPSERVER], "env": {"IGNORE_SIGTERM": "1"}},
    "kubesim/sleep": {"argv": ["/bin/sleep", "$@"]},
    "kubesim/sh": {"argv": ["/bin/sh", "$@"]},
}


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    sim = KubeSim(tmp_path_factory.mktemp("cluster"), image_map=IMAGES)
    sim.start()
    yield sim
    leftovers = sim.stop()
    assert leftovers == [], "pod processes outlived kubesim: %s" % leftovers


_counter = itertools.count()


@pytest.fixture
def ns(cluster, request):
    name = "t%d-%s" % (next(_counter), request.node.name.lower().replace("_", "-")[:40].strip("-"))
    cluster.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    cluster.request("DELETE", "/api/v1/namespaces/" + name)


@pytest.fixture
def make_sim(tmp_path):
    sims = []

    def make(**kwargs):
        kwargs.setdefault("image_map", IMAGES)
        sim = KubeSim(tmp_path / ("sim%d" % len(sims)), **kwargs)
        sims.append(sim)
        return sim.start()
    yield make
    for sim in sims:
        leftovers = sim.stop()
        assert leftovers == [], "pod processes outlived kubesim: %s" % leftovers


def deployment(name, replicas=1, image="kubesim/http:1", port=8080, labels=None, probe=None, env=None,
               grace=None, port_name=None):
    labels = labels or {"app": name}
    c = {"name": "main", "image": image, "ports": [{"containerPort": port}]}
    if port_name:
        c["ports"][0]["name"] = port_name
    if probe is None:
        # Without a probe a pod is Ready as soon as its process starts, before it listens (as in
        # a real cluster); tests that send traffic want Ready to mean "accepting".
        probe = {"tcpSocket": {"port": port}, "periodSeconds": 1}
    if probe:
        c["readinessProbe"] = probe
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
    spec = {"containers": [c]}
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": spec}}}


def service(name, selector=None, port=80, target=8080, port_name="http"):
    spec = {"ports": [{"name": port_name, "port": port, "targetPort": target}]}
    if selector is not False:
        spec["selector"] = selector or {"app": name}
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name}, "spec": spec}


WIDGET_CRD = textwrap.dedent("""\
    apiVersion: apiextensions.k8s.io/v1
    kind: CustomResourceDefinition
    metadata:
      name: widgets.example.com
    spec:
      group: example.com
      scope: Namespaced
      names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
      versions:
      - name: v1
        served: true
        storage: true
        subresources:
          status: {}
          scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
        additionalPrinterColumns:
        - {name: Size, type: integer, jsonPath: .spec.size}
        - {name: Color, type: string, jsonPath: .spec.color}
        schema:
          openAPIV3Schema:
            type: object
            properties:
              spec:
                type: object
                required: [size]
                properties:
                  size: {type: integer, minimum: 1, maximum: 10}
                  replicas: {type: integer, minimum: 0}
                  color: {type: string, enum: [red, blue], default: red}
                  name: {type: string, maxLength: 8, pattern: '^[a-z]+$'}
                  tags: {type: array, maxItems: 2, items: {type: string}}
                  nested:
                    type: object
                    properties:
                      level: {type: integer, default: 3}
                  free:
                    type: object
                    x-kubernetes-preserve-unknown-fields: true
              status:
                type: object
                properties:
                  replicas: {type: integer}
                  phase: {type: string}
    """)
