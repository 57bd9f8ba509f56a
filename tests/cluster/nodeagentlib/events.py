"""Pod events as the kubelet records them (Pulled, Created, Started, Killing, Unhealthy, BackOff,
Failed), so `kubectl describe pod` and `kubectl events` tell what the node agent did. Posted from
one background thread so a pod worker never waits on the API for them; a repeat of the same
event raises its count instead of making a new object, as the kubelet's recorder does."""
import logging
import os
import queue
import threading
import time

from .kubeapi import ApiError

log = logging.getLogger("nodeagent.events")


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Recorder:
    def __init__(self, api, node_name):
        self.api = api
        self.node = node_name
        self.q = queue.Queue(maxsize=1000)
        self.seen = {}            # (uid, fieldPath, reason, message) -> [event name, count]
        threading.Thread(target=self._loop, name="events", daemon=True).start()

    def emit(self, pod, container, etype, reason, message):
        """Queues one event about pod (and container, if not None); dropped if the queue is full."""
        md = pod["metadata"]
        field = None
        if container is not None:
            kind = "initContainers" if container.init else "containers"
            field = "spec.%s{%s}" % (kind, container.name)
        try:
            self.q.put_nowait((md["namespace"], md["name"], md["uid"], field, etype, reason, message))
        except queue.Full:
            pass

    def _loop(self):
        while True:
            ns, name, uid, field, etype, reason, message = self.q.get()
            key = (uid, field, reason, message)
            now = _now()
            try:
                hit = self.seen.get(key)
                if hit is not None:
                    hit[1] += 1
                    self.api.patch("/api/v1/namespaces/%s/events/%s" % (ns, hit[0]),
                                   {"count": hit[1], "lastTimestamp": now})
                    continue
                ev_name = "%s.%x" % (name, time.time_ns() + os.getpid())
                obj = {"apiVersion": "v1", "kind": "Event",
                       "metadata": {"name": ev_name, "namespace": ns},
                       "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": ns, "name": name,
                                          "uid": uid},
                       "reason": reason, "message": message, "type": etype, "count": 1,
                       "firstTimestamp": now, "lastTimestamp": now,
                       "source": {"component": "kubelet", "host": self.node},
                       "reportingComponent": "kubelet", "reportingInstance": self.node}
                if field:
                    obj["involvedObject"]["fieldPath"] = field
                self.api.post("/api/v1/namespaces/%s/events" % ns, obj)
                if len(self.seen) > 5000:
                    self.seen.clear()
                self.seen[key] = [ev_name, 1]
            except (ApiError, OSError) as e:
                log.debug("event %s for %s/%s not recorded: %s", reason, ns, name, e)
