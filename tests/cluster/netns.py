"""Network namespaces of the test cluster, through the `ip` command.

The cluster's namespace is hfc-ID; the node agent's pods live in hfc-ID-p-*, and tests may make
more under the same prefix. Everything is made inside those namespaces: nothing here touches
the host namespace's links, addresses, routes, sysctls or firewall.
"""
import os
import signal
import subprocess
import time

from nodeagentlib import nsutil

BRIDGE = "hfbr0"
NODE_IP = "10.88.0.1"
POD_CIDR = "10.88.0.0/24"
# The node agent gives pods .2 to .239 (--pod-ip-range); .240 to .254 are the tests' own, for
# throwaway namespaces attached to the bridge as a pod's is (attach_pod), so they never meet a
# pod's address.
POD_IP_RANGE = "10.88.0.2-10.88.0.239"
TEST_IPS = ["10.88.0.%d" % n for n in range(240, 255)]
SERVICE_CIDR = "10.96.0.0/24"


def enter(ns):
    """Moves the calling thread (and the threads and processes it starts later) into network
    namespace `ns`; returns a descriptor of the one it was in, for leave(). The mount namespace
    stays the host's."""
    host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        nsutil.setns_path("/run/netns/" + ns, nsutil.CLONE_NEWNET)
    except BaseException:
        os.close(host)
        raise
    return host


def leave(host):
    """Moves the calling thread back to the namespace enter() returned (and closes it)."""
    try:
        nsutil.setns_fd(host, nsutil.CLONE_NEWNET, "setns back")
    finally:
        os.close(host)


def ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s failed: %s" % (" ".join(args), r.stderr.strip()))
    return r


def in_ns(ns, argv, check=True, timeout=30, **kw):
    """Runs argv inside ns and returns the CompletedProcess (text, output captured)."""
    r = subprocess.run(["ip", "netns", "exec", ns] + list(argv), capture_output=True, text=True,
                       timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise RuntimeError("in %s: %s failed (%d): %s" % (ns, " ".join(argv), r.returncode,
                                                           (r.stderr or r.stdout).strip()))
    return r


def names():
    """Every network namespace name on the machine."""
    try:
        return sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        return []


def with_prefix(prefix):
    return [n for n in names() if n.startswith(prefix)]


def exists(ns):
    return ns in names()


def pids(ns):
    r = ip("netns", "pids", ns, check=False)
    return [int(p) for p in r.stdout.split() if p.isdigit()]


def make_node_network(ns):
    """Creates ns with lo up and the bridge hfbr0 (10.88.0.1/24, the node's address and the
    pods' gateway), a route sending the service CIDR to the bridge (so that traffic to a
    ClusterIP from the node itself has a route for kube-proxy's DNAT to act on; no default
    route: nothing can leave), forwarding on and bridged traffic through iptables.

    And TCP to the service CIDR that no DNAT rule took is rejected, from the node itself
    (OUTPUT) and from pods (FORWARD). A SYN to a ClusterIP that kube-proxy has not programmed
    yet is otherwise not DNATed: it goes to the ClusterIP itself on the bridge, and conntrack
    keeps its entry, without NAT, for 120 s (SYN_SENT). A later connection that gets the same
    source port (clients cycle through the ephemeral ports in about 14,000 connections) is
    taken for a retransmission of it, stays un-DNATed and fails with "No route to host" after
    ARP gives up. In the filter table (after kube-proxy's DNAT) such a connect fails (once the
    ICMP error is back), as kube-proxy's own reject of a Service without endpoints does, and
    leaves no conntrack entry."""
    ip("netns", "add", ns)
    ip("-n", ns, "link", "set", "lo", "up")
    ip("-n", ns, "link", "add", BRIDGE, "type", "bridge")
    ip("-n", ns, "addr", "add", NODE_IP + "/24", "dev", BRIDGE)
    ip("-n", ns, "link", "set", BRIDGE, "up")
    ip("-n", ns, "route", "add", SERVICE_CIDR, "dev", BRIDGE)
    in_ns(ns, ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1",
               "net.bridge.bridge-nf-call-iptables=1"])
    for chain in ("OUTPUT", "FORWARD"):
        in_ns(ns, ["iptables", "-w", "5", "-A", chain, "-d", SERVICE_CIDR, "-p", "tcp",
                   "-j", "REJECT", "--reject-with", "icmp-host-unreachable"])


def attach_pod(node_ns, pod_ns, host_if, address):
    """Makes pod_ns as the node agent makes a pod's namespace: eth0, a veth whose peer host_if
    is a port of hfbr0 in node_ns, address/24 on it, default route via the node, lo up."""
    ip("netns", "add", pod_ns)
    ip("-n", node_ns, "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", pod_ns)
    ip("-n", node_ns, "link", "set", host_if, "master", BRIDGE, "up")
    ip("-n", pod_ns, "link", "set", "lo", "up")
    ip("-n", pod_ns, "addr", "add", address + "/24", "dev", "eth0")
    ip("-n", pod_ns, "link", "set", "eth0", "up")
    ip("-n", pod_ns, "route", "add", "default", "via", NODE_IP)


def detach_pod(node_ns, pod_ns, host_if):
    """Undoes attach_pod: deletes the veth first (at once; deleting a namespace destroys its
    links a moment later, so the name host_if could still be taken right after), then pod_ns."""
    ip("-n", node_ns, "link", "delete", host_if, check=False)
    delete(pod_ns)


def delete(ns):
    """Kills every process still inside ns (it is ours), then deletes it. Returns the PIDs
    killed."""
    killed = []
    for pid in pids(ns):
        try:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 5
    while killed and pids(ns) and time.monotonic() < deadline:
        time.sleep(0.05)
    ip("netns", "delete", ns, check=False)
    return killed
