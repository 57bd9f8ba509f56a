"""STAND-IN for `scripts/cluster up|down`, only until that script lands: the smallest control
plane the node agent's tests need, laid out as CONTRACT-cluster.md lays out the real one, but
under its own names (`hfn-ID`, `hfn-ID-p-`) so that it never meets a cluster of scripts/cluster.

    up(state_dir)   -> StandIn: network namespace hfn-ID (lo, bridge hfbr0 10.88.0.1/24,
                       ip_forward), PKI made by openssl, etcd on 127.0.0.1:2379, kube-apiserver on
                       0.0.0.0:6443 advertising 10.88.0.1 (Node,RBAC; NodeRestriction;
                       service-account issuance), kube-controller-manager, kube-scheduler.
    StandIn.down()  stops every process it started (by PID) and deletes every hfn-ID* namespace.

No kube-proxy: that is scripts/cluster's job; tests reach the API server at 10.88.0.1:6443.
Everything runs inside hfn-ID; nothing listens or sends in the host network namespace."""
import ctypes
import hashlib
import os
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def tools_bin():
    return subprocess.run([os.path.join(HERE, "tools", "build")], check=True, stdout=subprocess.PIPE,
                          text=True).stdout.strip()


def setns(fd, nstype=CLONE_NEWNET):
    """Moves the calling thread into the namespace open at fd (a new thread inherits it)."""
    if _libc.setns(fd, nstype) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


def _openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_pki(pki):
    """CA, API server serving cert, client certs (admin, node, controller-manager, scheduler) and
    the service-account key pair, all EC P-256 (fast to make)."""
    os.makedirs(pki, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
             "-subj", "/CN=hfn-standin-ca", cwd=pki)
    leaves = {
        "apiserver": ("/CN=kube-apiserver", "serverAuth",
                      "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,"
                      "DNS:kubernetes.default.svc.cluster.local,DNS:localhost,"
                      "IP:10.88.0.1,IP:10.96.0.1,IP:127.0.0.1"),
        "admin": ("/O=system:masters/CN=admin", "clientAuth", None),
        "node": ("/O=system:nodes/CN=system:node:hfc-node", "clientAuth", None),
        "controller-manager": ("/CN=system:kube-controller-manager", "clientAuth", None),
        "scheduler": ("/CN=system:kube-scheduler", "clientAuth", None),
    }
    for name, (subj, usage, san) in leaves.items():
        _openssl("req", "-new", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", subj, cwd=pki)
        ext = "keyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n" % usage
        if san:
            ext += "subjectAltName=%s\n" % san
        with open(os.path.join(pki, name + ".ext"), "w") as f:
            f.write(ext)
        _openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-days", "30", "-out", name + ".crt", "-extfile", name + ".ext", cwd=pki)
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "sa.key", cwd=pki)
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path, pki, user, server="https://10.88.0.1:6443"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("""apiVersion: v1
kind: Config
clusters:
- name: hfn
  cluster: {server: "%(server)s", certificate-authority: "%(pki)s/ca.crt"}
users:
- name: %(user)s
  user: {client-certificate: "%(pki)s/%(user)s.crt", client-key: "%(pki)s/%(user)s.key"}
contexts:
- name: hfn
  context: {cluster: hfn, user: %(user)s}
current-context: hfn
""" % {"server": server, "pki": pki, "user": user})


class StandIn:
    def __init__(self, state_dir):
        self.dir = os.path.realpath(state_dir)
        self.id = hashlib.sha256(self.dir.encode()).hexdigest()[:8]
        self.netns = "hfn-" + self.id
        self.pod_prefix = self.netns + "-p-"
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.node_kubeconfig = os.path.join(self.dir, "node", "kubeconfig")
        self.procs = {}
        self.argv = {}
        self.bin = None
        self._host_ns = None

    def _ip(self, *args):
        subprocess.run(["ip"] + list(args), check=True, stderr=subprocess.PIPE)

    def _start(self, name, argv):
        self.argv[name] = argv
        log = open(os.path.join(self.dir, "logs", name + ".log"), "ab")
        p = subprocess.Popen(["ip", "netns", "exec", self.netns] + argv, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.procs[name] = p
        with open(os.path.join(self.dir, "pids", name + ".pid"), "w") as f:
            f.write("%d\n" % p.pid)
        return p

    def up(self, timeout=90):
        self.bin = tools_bin()
        for d in ("logs", "pids", "node", "etcd"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        pki = os.path.join(self.dir, "pki")
        make_pki(pki)
        write_kubeconfig(self.kubeconfig, pki, "admin")
        write_kubeconfig(self.node_kubeconfig, pki, "node")
        write_kubeconfig(os.path.join(self.dir, "controller-manager.kubeconfig"), pki, "controller-manager")
        write_kubeconfig(os.path.join(self.dir, "scheduler.kubeconfig"), pki, "scheduler")

        self._ip("netns", "add", self.netns)
        n = ["-n", self.netns]
        self._ip(*n, "link", "set", "lo", "up")
        self._ip(*n, "link", "add", "hfbr0", "type", "bridge")
        self._ip(*n, "addr", "add", "10.88.0.1/24", "dev", "hfbr0")
        self._ip(*n, "link", "set", "hfbr0", "up")
        subprocess.run(["ip", "netns", "exec", self.netns, "sysctl", "-qw", "net.ipv4.ip_forward=1"], check=True)

        b = self.bin
        self._start("etcd", [b + "/etcd", "--name", "hfn", "--data-dir", os.path.join(self.dir, "etcd"),
                             "--listen-client-urls", "http://127.0.0.1:2379",
                             "--advertise-client-urls", "http://127.0.0.1:2379",
                             "--listen-peer-urls", "http://127.0.0.1:2380",
                             "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                             "--initial-cluster", "hfn=http://127.0.0.1:2380", "--log-level", "warn"])
        self._start("kube-apiserver", [
            b + "/kube-apiserver", "--etcd-servers", "http://127.0.0.1:2379",
            "--bind-address", "0.0.0.0", "--secure-port", "6443", "--advertise-address", "10.88.0.1",
            "--service-cluster-ip-range", "10.96.0.0/24",
            "--client-ca-file", pki + "/ca.crt",
            "--tls-cert-file", pki + "/apiserver.crt", "--tls-private-key-file", pki + "/apiserver.key",
            "--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", pki + "/sa.pub",
            "--service-account-signing-key-file", pki + "/sa.key",
            "--profiling=false", "--v=1"])
        self._start("kube-controller-manager", [
            b + "/kube-controller-manager", "--kubeconfig", self.dir + "/controller-manager.kubeconfig",
            "--authentication-kubeconfig", self.dir + "/controller-manager.kubeconfig",
            "--authorization-kubeconfig", self.dir + "/controller-manager.kubeconfig",
            "--root-ca-file", pki + "/ca.crt", "--service-account-private-key-file", pki + "/sa.key",
            "--use-service-account-credentials", "--leader-elect=false", "--secure-port", "0",
            "--bind-address", "127.0.0.1", "--profiling=false"])
        self._start("kube-scheduler", [
            b + "/kube-scheduler", "--kubeconfig", self.dir + "/scheduler.kubeconfig",
            "--authentication-kubeconfig", self.dir + "/scheduler.kubeconfig",
            "--authorization-kubeconfig", self.dir + "/scheduler.kubeconfig",
            "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", "0", "--profiling=false"])
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout):
        """Waits for the API server's /readyz (and that every process still runs)."""
        deadline = time.monotonic() + timeout
        while True:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError("%s exited with %s; see %s/logs/%s.log" % (name, p.returncode, self.dir, name))
            r = subprocess.run(["ip", "netns", "exec", self.netns, self.bin + "/kubectl", "--kubeconfig",
                                self.kubeconfig, "get", "--raw", "/readyz", "--request-timeout", "2s"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError("kube-apiserver not ready after %ds: %s" % (timeout, r.stdout[-300:]))
            time.sleep(0.5)

    def stop(self, name, timeout=15, sig=signal.SIGTERM):
        p = self.procs.pop(name)
        if p.poll() is None:
            os.killpg(p.pid, sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def restart(self, name, sig=signal.SIGTERM):
        self.stop(name, sig=sig)
        self._start(name, self.argv[name])

    def enter(self):
        """Moves the calling thread (and the threads and processes it starts later) into hfn-ID,
        so a test can reach 10.88.0.1 and pod IPs; leave() goes back."""
        self._host_ns = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open("/run/netns/" + self.netns, os.O_RDONLY)
        try:
            setns(fd)
        finally:
            os.close(fd)

    def leave(self):
        if self._host_ns is not None:
            setns(self._host_ns)
            os.close(self._host_ns)
            self._host_ns = None

    def down(self):
        self.leave()
        for name in reversed(list(self.procs)):
            self.stop(name, timeout=5)    # the API server would wait out open watches
        left = [n for n in netns_list() if n.startswith(self.netns)]
        for n in left:
            subprocess.run(["ip", "netns", "del", n], stderr=subprocess.DEVNULL)
        return left


def netns_list():
    out = subprocess.run(["ip", "netns", "list"], stdout=subprocess.PIPE, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]
