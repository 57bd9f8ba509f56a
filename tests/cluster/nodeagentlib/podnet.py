"""Pod networks: one network namespace per pod, `<prefix>N`, with eth0 (a veth whose peer
`hfvN` is attached to the node's bridge in hairpin mode), the pod IP, a default route via the
bridge's address, and lo up. Addresses come from the pod CIDR (.2 up; the gateway is the first host
address), or from a part of it (--pod-ip-range).

The agent must run in the host's mount namespace (`nsenter --net=/run/netns/NODE`, not `ip netns
exec NODE`, which gives it one of its own): `ip netns add` names a namespace by a bind mount under
/run/netns, and one made in a private mount namespace is seen by nobody else."""
import ipaddress
import json
import logging
import os
import re
import subprocess
import threading


log = logging.getLogger("nodeagent.podnet")


def _ip(*args, check=True):
    r = subprocess.run(["ip"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise OSError("ip %s: %s" % (" ".join(args), r.stderr.strip()))
    return r


def list_netns():
    out = _ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


class PodNetworks:
    """Allocates pod IPs and slot numbers N, makes and deletes pod namespaces. Thread-safe.
    The allocations are written to state_dir/ips.json for whoever debugs."""

    def __init__(self, cidr, bridge, prefix, state_dir, ip_range=None):
        self.net = ipaddress.ip_network(cidr)
        hosts = list(self.net.hosts())
        self.gateway = str(hosts[0])
        self.pool = [str(h) for h in hosts[1:]]
        if ip_range:
            first, _, last = ip_range.partition("-")
            first, last = ipaddress.ip_address(first.strip()), ipaddress.ip_address(last.strip())
            self.pool = [str(h) for h in hosts[1:] if first <= h <= last]
            if not self.pool:
                raise ValueError("pod IP range %s has no address of %s but the gateway" % (ip_range, cidr))
        self.bridge = bridge
        self.prefix = prefix
        self.state_file = os.path.join(state_dir, "ips.json")
        self.lock = threading.Lock()
        self.used = {}          # ip -> {"slot": N, "pod": "ns/name", "uid": uid}
        self.next = 0           # round robin, so an address is not reused at once

    def remove_stale(self):
        """Deletes pod namespaces (and bridge ports) an earlier agent left, e.g. after SIGKILL."""
        for n in list_netns():
            if n.startswith(self.prefix):
                log.info("deleting stale pod namespace %s", n)
                _ip("netns", "del", n, check=False)
        links = _ip("-o", "link", "show", "master", self.bridge, check=False).stdout
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0]
            if re.fullmatch(r"hfv[0-9]+", name):         # only the agent's own names
                _ip("link", "del", name, check=False)

    def allocate(self, key, uid, prefer=None):
        """A free address and its slot; prefer (the pod IP an earlier agent gave the pod, which the
        API server does not let change) if it is free."""
        with self.lock:
            if prefer in self.pool and prefer not in self.used:
                slot = self._slot(prefer)
                self.used[prefer] = {"slot": slot, "pod": key, "uid": uid}
                self._save()
                return prefer, slot
            for _ in range(len(self.pool)):
                ip = self.pool[self.next % len(self.pool)]
                self.next += 1
                if ip not in self.used:
                    slot = self._slot(ip)
                    self.used[ip] = {"slot": slot, "pod": key, "uid": uid}
                    self._save()
                    return ip, slot
        raise OSError("pod CIDR %s exhausted" % self.net)

    def _slot(self, ip):
        """N of the namespace and the bridge port: the address's offset in the CIDR (.7 -> 7)."""
        return int(ipaddress.ip_address(ip)) - int(self.net.network_address)

    def release(self, ip):
        with self.lock:
            self.used.pop(ip, None)
            self._save()

    def _save(self):
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.used, f, indent=1, sort_keys=True)
        os.replace(tmp, self.state_file)

    def netns_name(self, slot):
        return "%s%d" % (self.prefix, slot)

    def create(self, ip, slot):
        """Makes the pod's namespace and wires it to the bridge; undoes what it did on failure."""
        ns, veth = self.netns_name(slot), "hfv%d" % slot
        _ip("netns", "del", ns, check=False)
        _ip("link", "del", veth, check=False)
        try:
            _ip("netns", "add", ns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _ip("link", "set", veth, "master", self.bridge, "up")
            # hairpin, as the CNI bridge plugin sets it: a pod reaching its own Service's ClusterIP
            # is DNATed back to itself, out of the bridge port the packet came in by
            _ip("link", "set", veth, "type", "bridge_slave", "hairpin", "on")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", "%s/%d" % (ip, self.net.prefixlen), "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")
            _ip("-n", ns, "route", "add", "default", "via", self.gateway)
        except OSError:
            self.delete(slot)
            raise
        return ns

    def delete(self, slot):
        _ip("link", "del", "hfv%d" % slot, check=False)
        _ip("netns", "del", self.netns_name(slot), check=False)
