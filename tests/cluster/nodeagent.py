#!/usr/bin/python3
"""The node agent of the test cluster: the one simulated part of it, doing the kubelet's job for
Node NAME against the real Kubernetes API server (see docs/test-cluster.md, "The node agent").

    nsenter --net=/run/netns/hfc-ID /usr/bin/python3 tests/cluster/nodeagent.py \\
        --kubeconfig DIR/node/kubeconfig --node-name hfc-node --node-ip 10.88.0.1 \\
        --pod-cidr 10.88.0.0/24 --pod-ip-range 10.88.0.2-10.88.0.239 --bridge hfbr0 \\
        --netns-prefix hfc-ID-p- --image-map DIR/image-map.json --state-dir DIR/node

(as `scripts/cluster up` starts it: in the cluster's network namespace and the host's mount
namespace, so the pod namespaces it adds show in `ip netns list`; docs/test-cluster.md, "The
contract")

Runs in the foreground until SIGTERM; then stops every pod's processes, deletes every pod
network namespace it made, and exits 0."""
import sys

from nodeagentlib.main import main  # beside this script: its folder is first on sys.path

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
