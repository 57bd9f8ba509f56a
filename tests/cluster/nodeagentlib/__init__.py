"""The node agent of the test cluster: the kubelet's job, done with local processes and network
namespaces, against the real Kubernetes API server. See ../nodeagent.py and docs/test-cluster.md."""
