"""hftest: what every Python test suite, benchmark and demo of holdfast shares (standard library
only, besides pytest where a module says so).

    holdfast    the holdfast binary as a process under test: its JSON log, admin endpoint,
                sanitizer reports; Holdfast runs it in standalone mode (a config file)
    hfk8s       HoldfastK8s: holdfast in Kubernetes mode beside the test cluster
    promtext    the one parser of the Prometheus text exposition
    http1       HTTP/1.1 clients that read responses one after another (keep-alive, pipelining)
    net         loopback addresses and free ports
    procfs      what /proc says of a process: CPU seconds, status fields, its tree
    kubeclient  the one poller (wait_for) and the Kubernetes API's verbs
    realcluster RealCluster: the tests' client of the real test cluster (scripts/cluster)
    apiproxy    the fault-injecting proxy in front of the test cluster's API server
    conntrace   where the kernel sent a connection (conntrack events)
    promfix     Prometheus fixtures: Exporter, Prometheus, FakePrometheus
    thirdparty_crds  CRDs of other projects the tests install (KEDA's ScaledObject)
    benchlib    what the benchmarks in bench/ share: tools, processes, nginx, machine info
    apps/       programs the test cluster's pods run (httpserver.py)

Importing: pytest puts tests/ and tests/cluster (the test cluster's own program: clusterlib,
netns, pki, procs, the node agent) on sys.path (pytest.ini `pythonpath`); a script run directly
does the same once, through its folder's _path.py.
"""
import os

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3"
