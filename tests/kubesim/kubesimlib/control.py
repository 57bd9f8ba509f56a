"""The fault-injection control endpoint: plain HTTP + JSON on loopback (address in DIR/ready).

  GET  /state                 resourceVersion, open watches, pods and their pids, proxy table
  POST /faults/outage         {"seconds": N, "mode": "refuse"|"503"}  API unreachable for N s
  POST /faults/drop-watches   close every open watch (clients see the stream end)
  POST /faults/compact        forget watch history: watches from older RVs get 410 Expired
  POST /faults/latency        {"ms": N, "seconds": S}  extra latency on every API request
                              (for S seconds; omitted = until cleared; ms 0 clears)
  POST /faults/slow-write-answers  {"ms": N, "seconds": S}  the answer to every write
                              (POST, PUT, PATCH, DELETE) waits N ms after the write is done and
                              its watch events are sent (for S seconds; omitted = until cleared)
  POST /faults/kill-pod       {"namespace", "name", "signal": "KILL"|"TERM"}  kill the pod's
                              processes (the kubelet restarts them, restartCount + 1)
  POST /faults/ignore-unmanaged-slices {"on": true|false}  kube-proxy uses only the EndpointSlice
                              controller's slices (a mesh or CNI that ignores hand-made ones)
  POST /faults/clear          end any outage, extra latency and slow write answers now, and
                              the fault above
"""
import http.server
import json
import signal
import threading
import time


class ControlServer:
    def __init__(self, host, port, api, store, registry, kubelet, proxy=None):
        self.api, self.store, self.registry, self.kubelet, self.proxy = api, store, registry, kubelet, proxy
        control = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _reply(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") == "/state":
                    return self._reply(200, control.state())
                self._reply(404, {"error": "not found"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    body = json.loads(self.rfile.read(n) or b"{}")
                    self._reply(200, control.fault(self.path.rstrip("/"), body))
                except KeyError as e:
                    self._reply(404, {"error": "unknown fault or missing field %s" % e})
                except (ValueError, TypeError) as e:
                    self._reply(400, {"error": str(e)})

        self.httpd = http.server.ThreadingHTTPServer((host, port), H)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.timers = []

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, name="control", daemon=True).start()

    def stop(self):
        for t in self.timers:
            t.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()

    def state(self):
        pods = {}
        with self.kubelet.lock:
            for (ns, name), w in self.kubelet.workers.items():
                pods["%s/%s" % (ns, name)] = {"ip": w.ip, "pids": [c.proc.pid for c in w.containers if c.proc]}
        out = {"resourceVersion": self.store.rv, "compactedResourceVersion": self.store.compacted_rv,
               "watches": len(self.store.watchers), "pods": pods,
               "apiListening": self.api.listening.is_set(),
               "apiUnavailable": time.monotonic() < self.api.unavailable_until}
        if self.proxy is not None:
            out["proxy"] = {"active": self.proxy.active, "relayed": self.proxy.relayed,
                            "listeners": {"%s:%d" % k: {"listening": l.listening,
                                                        "endpoints": ["%s:%d" % e for e in l.endpoints]}
                                          for k, l in list(self.proxy.listeners.items())}}
        return out

    def _later(self, seconds, fn):
        t = threading.Timer(seconds, fn)
        t.daemon = True
        self.timers.append(t)
        t.start()

    def fault(self, path, body):
        api = self.api
        if path == "/faults/outage":
            seconds = float(body["seconds"])
            mode = body.get("mode", "refuse")
            dropped = self.store.drop_watches()
            if mode == "refuse":
                api.refuse()
                self._later(seconds, api.resume)
            elif mode == "503":
                api.unavailable_until = time.monotonic() + seconds
                api.close_connections()
            else:
                raise ValueError("mode must be refuse or 503")
            return {"outage": mode, "seconds": seconds, "droppedWatches": dropped}
        if path == "/faults/drop-watches":
            return {"droppedWatches": self.store.drop_watches()}
        if path == "/faults/compact":
            return {"compactedResourceVersion": self.store.compact()}
        if path == "/faults/latency":
            ms = float(body["ms"])
            api.extra_latency = ms / 1000.0
            secs = body.get("seconds")
            api.extra_latency_until = time.monotonic() + (float(secs) if secs is not None else 1e9) if ms else 0
            return {"latencyMs": ms, "seconds": secs}
        if path == "/faults/slow-write-answers":
            ms = float(body["ms"])
            secs = body.get("seconds")
            api.write_answer_delay = ms / 1000.0
            api.write_answer_delay_until = time.monotonic() + (float(secs) if secs is not None else 1e9) if ms else 0
            return {"writeAnswerDelayMs": ms, "seconds": secs}
        if path == "/faults/kill-pod":
            sig = getattr(signal, "SIG" + body.get("signal", "KILL").upper().replace("SIG", ""))
            ok = self.kubelet.kill_pod(body["namespace"], body["name"], sig)
            if not ok:
                raise KeyError("pod %s/%s" % (body["namespace"], body["name"]))
            return {"killed": "%s/%s" % (body["namespace"], body["name"]), "signal": sig.name}
        if path == "/faults/ignore-unmanaged-slices":
            if self.proxy is None:
                raise KeyError("kube-proxy is not running")
            self.proxy.ignore_unmanaged = bool(body.get("on", True))
            self.proxy.loop.call_soon_threadsafe(self.proxy._schedule)
            return {"ignoreUnmanagedSlices": self.proxy.ignore_unmanaged}
        if path == "/faults/clear":
            if self.proxy is not None and self.proxy.ignore_unmanaged:
                self.proxy.ignore_unmanaged = False
                self.proxy.loop.call_soon_threadsafe(self.proxy._schedule)
            api.unavailable_until = 0
            api.extra_latency_until = 0
            api.write_answer_delay_until = 0
            api.resume()
            return {"cleared": True}
        raise KeyError(path)
