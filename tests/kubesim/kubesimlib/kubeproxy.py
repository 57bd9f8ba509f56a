"""kube-proxy: every Service with a ClusterIP gets that loopback address, and each TCP service
port a listener that relays each connection to a random ready endpoint.

Endpoints come from *all* EndpointSlices labelled `kubernetes.io/service-name=<svc>` in the
Service's namespace, whoever manages them. A slice port matches a Service port by name and
protocol; its number is taken from the slice. As the real kube-proxy:
  - an endpoint whose conditions.ready is missing counts as ready (nil means unknown = ready);
  - if no endpoint is ready, serving+terminating endpoints are used (terminating fallback);
  - duplicate addresses across slices count once.
With no usable endpoint the listener is shut down (bound but not listening), so connections
are refused, as a cluster answers with an ICMP reject. Changes apply after --proxy-delay-ms;
connections already relayed keep going (conntrack). A fault makes it ignore every slice not
managed by the EndpointSlice controller, as some meshes and CNIs do with hand-made slices."""
import asyncio
import errno
import ipaddress
import logging
import random
import socket
import struct
import threading

from .errors import ApiError

log = logging.getLogger("kubesim.proxy")


class ClusterIPAllocator:
    """Allocates ClusterIPs from the service range; an address is skipped if any of the
    Service's ports is already bound on it (another kubesim on the same machine)."""

    def __init__(self, cidr):
        self.net = ipaddress.ip_network(cidr)
        self.hosts = [h for h in self.net.hosts() if str(h).rsplit(".", 1)[1] not in ("0", "255")]
        self.next = random.randrange(len(self.hosts) // 2) if len(self.hosts) > 512 else 0
        self.used = set()
        self.lock = threading.Lock()

    def allocate(self, svc):
        spec = svc.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return
        want = spec.get("clusterIP")
        ports = [p.get("port") for p in spec.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
        with self.lock:
            if want == "None":
                spec["clusterIPs"] = ["None"]
                return
            if want:
                try:
                    ok = ipaddress.ip_address(want) in self.net and want not in self.used
                except ValueError:
                    ok = False
                if not ok:
                    raise ApiError(422, "Invalid", 'Service "%s" is invalid: spec.clusterIPs: Invalid value: '
                                   '[]string{"%s"}: failed to allocate IP %s: provided IP is not in the valid '
                                   "range. The range of valid IPs is %s"
                                   % (svc["metadata"].get("name"), want, want, self.net),
                                   {"name": svc["metadata"].get("name"), "kind": "Service",
                                    "causes": [{"reason": "FieldValueInvalid", "field": "spec.clusterIPs",
                                                "message": "failed to allocate IP %s" % want}]})
                ip = want
            else:
                ip = None
                for _ in range(len(self.hosts)):
                    cand = str(self.hosts[self.next % len(self.hosts)])
                    self.next += 1
                    if cand not in self.used and all(_bindable(cand, p) for p in ports if isinstance(p, int)):
                        ip = cand
                        break
                if ip is None:
                    raise ApiError(500, "InternalError", "Internal error occurred: failed to allocate a serviceIP: "
                                   "range is full")
            self.used.add(ip)
            spec["clusterIP"] = ip
            spec["clusterIPs"] = [ip]

    def release(self, svc):
        ip = (svc.get("spec") or {}).get("clusterIP")
        with self.lock:
            self.used.discard(ip)


def _bindable(ip, port):
    s = socket.socket()
    try:
        s.bind((ip, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


class Listener:
    """One ClusterIP:port. The socket stays bound for the Service's life; it listens only while
    there are endpoints (shutdown(SHUT_RD) stops listening without giving up the port)."""

    def __init__(self, proxy, ip, port):
        self.proxy = proxy
        self.ip, self.port = ip, port
        self.endpoints = []
        self.listening = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setblocking(False)
        self.sock.bind((ip, port))

    def set_endpoints(self, eps):
        loop = self.proxy.loop
        self.endpoints = eps
        if eps and not self.listening:
            self.sock.listen(4096)
            loop.add_reader(self.sock.fileno(), self._accept)
            self.listening = True
        elif not eps and self.listening:
            loop.remove_reader(self.sock.fileno())
            try:
                self.sock.shutdown(socket.SHUT_RD)
            except OSError:
                pass
            self.listening = False

    def _accept(self):
        for _ in range(256):
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    log.warning("accept on %s:%d: %s", self.ip, self.port, e)
                return
            conn.setblocking(False)
            if not self.endpoints:
                _reset(conn)
                continue
            self.proxy.loop.create_task(self.proxy.relay(conn, random.choice(self.endpoints)))

    def close(self):
        if self.listening:
            self.proxy.loop.remove_reader(self.sock.fileno())
        self.sock.close()


def _reset(sock):
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class KubeProxy:
    def __init__(self, store, registry, service_cidr, delay_s):
        self.store = store
        self.registry = registry
        self.delay = delay_s
        self.allocator = ClusterIPAllocator(service_cidr)
        self.loop = asyncio.new_event_loop()
        self.listeners = {}            # (ip, port) -> Listener
        self.pending = False
        self.thread = None
        self.ignore_unmanaged = False  # fault: only the EndpointSlice controller's slices count
        self.active = 0                # relayed connections now open
        self.relayed = 0               # relayed connections in total
        self.svc_res = registry.lookup("", "v1", "services")
        self.es_res = registry.lookup("discovery.k8s.io", "v1", "endpointslices")

    def start(self):
        self.store.subscribers.append(self._on_change)
        self.thread = threading.Thread(target=self._run, name="kube-proxy", daemon=True)
        self.thread.start()
        self.loop.call_soon_threadsafe(self._compute)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def stop(self):
        def shutdown():
            for lst in self.listeners.values():
                lst.close()
            self.listeners.clear()
            self.loop.stop()
        self.loop.call_soon_threadsafe(shutdown)
        if self.thread:
            self.thread.join(5)

    def _on_change(self, etype, key, obj, old):
        if key in ("/services", "discovery.k8s.io/endpointslices"):
            self.loop.call_soon_threadsafe(self._schedule)

    def _schedule(self):
        if not self.pending:
            self.pending = True
            self.loop.call_soon(self._compute)

    def _compute(self):
        """Snapshot the desired table now; apply it after the propagation delay."""
        self.pending = False
        table = self.desired()
        if self.delay > 0:
            self.loop.call_later(self.delay, self._apply, table)
        else:
            self._apply(table)

    def desired(self):
        """{(clusterIP, port): [(endpointIP, port)]} for every TCP port of every ClusterIP Service."""
        services = self.store.list_raw(self.svc_res)[0]
        slices = self.store.list_raw(self.es_res)[0]
        by_svc = {}
        for s in slices:
            labels = s["metadata"].get("labels") or {}
            name = labels.get("kubernetes.io/service-name")
            if self.ignore_unmanaged and labels.get("endpointslice.kubernetes.io/managed-by") \
                    != "endpointslice-controller.k8s.io":
                continue
            if name:
                by_svc.setdefault((s["metadata"]["namespace"], name), []).append(s)
        table = {}
        for svc in services:
            spec = svc.get("spec") or {}
            ip = spec.get("clusterIP")
            if not ip or ip == "None" or spec.get("type") == "ExternalName":
                continue
            for sp in spec.get("ports") or []:
                proto = sp.get("protocol", "TCP")
                if proto != "TCP":
                    continue
                ready, fallback = [], []
                for s in by_svc.get((svc["metadata"]["namespace"], svc["metadata"]["name"]), []):
                    if s.get("addressType", "IPv4") != "IPv4":
                        continue
                    port = next((p.get("port") for p in s.get("ports") or []
                                 if (p.get("name") or "") == (sp.get("name") or "")
                                 and p.get("protocol", "TCP") == proto), None)
                    if port is None:
                        continue
                    for ep in s.get("endpoints") or []:
                        cond = ep.get("conditions") or {}
                        is_ready = cond.get("ready") is not False
                        serving = cond["serving"] if cond.get("serving") is not None else is_ready
                        terminating = cond.get("terminating") is True
                        for addr in (ep.get("addresses") or [])[:1]:
                            if is_ready:
                                ready.append((addr, port))
                            elif serving and terminating:
                                fallback.append((addr, port))
                eps = sorted(set(ready or fallback))
                table[(ip, sp["port"])] = eps
        return table

    def _apply(self, table):
        for key in list(self.listeners):
            if key not in table:
                self.listeners.pop(key).close()
        for key, eps in table.items():
            lst = self.listeners.get(key)
            if lst is None:
                try:
                    lst = self.listeners[key] = Listener(self, *key)
                except OSError as e:
                    log.warning("cannot bind ClusterIP %s:%d: %s", key[0], key[1], e)
                    continue
            lst.set_endpoints(eps)

    async def relay(self, client, ep):
        loop = self.loop
        backend = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        backend.setblocking(False)
        self.active += 1
        self.relayed += 1
        try:
            try:
                await asyncio.wait_for(loop.sock_connect(backend, ep), 10)
            except (OSError, asyncio.TimeoutError):
                _reset(client)   # as a DNAT to a dead endpoint would look: refused/reset
                backend.close()
                return
            for s in (client, backend):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await asyncio.gather(self._pump(client, backend), self._pump(backend, client))
        finally:
            self.active -= 1
            client.close()
            backend.close()

    async def _pump(self, src, dst):
        loop = self.loop
        try:
            while True:
                data = await loop.sock_recv(src, 65536)
                if not data:
                    try:
                        dst.shutdown(socket.SHUT_WR)      # half-close passes through
                    except OSError:
                        pass
                    return
                await loop.sock_sendall(dst, data)
        except OSError:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
