#!/usr/bin/python3
"""kubesim with a built-in profiler, for bench/scale --profile-kubesim.

Runs tests/kubesim exactly as tests/kubesim/kubesim does, plus one daemon thread that every
--interval seconds (default 0.01):
  - samples every Python thread's stack (sys._current_frames), and
  - every second, reads each thread's CPU time from /proc/self/task/<tid>/stat,
and, when kubesim exits (SIGTERM), writes a JSON report to $KUBESIM_PROFILE_OUT (on SIGUSR1:
to $KUBESIM_PROFILE_OUT.<phase>.json, <phase> read from $KUBESIM_PROFILE_OUT.phase, and starts
afresh, so a harness can cut the run into phases):
  cpu_by_group   CPU seconds per thread group (api connections, controllers, kube-proxy,
                 pod workers, ...), exact, from /proc
  top_self       leaf functions of samples taken while the thread was not blocked (samples
                 blocked on a lock are counted apart, per thread group: lock_wait_samples)
  top_cum        functions anywhere on those stacks (inclusive)
Samples of a thread waiting for the GIL are counted where it waits, so the per-function figures
are relative weights; the per-group CPU seconds are exact.

Usage: same flags as tests/kubesim/kubesim; the profiler is on only when KUBESIM_PROFILE_OUT is
set (without it, this is tests/kubesim/kubesim under another name: bench/scale starts kubesim
through a symlink to this file, so that no "kubesim" appears in its command line).
"""
import collections
import json
import linecache
import os
import re
import signal
import sys
import threading
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))   # bench/scale runs it via a symlink
sys.path.insert(0, os.path.join(REPO, "tests", "kubesim"))

from kubesimlib.main import main  # noqa: E402

IDLE_LEAVES = {"wait", "select", "accept", "recv", "recv_into", "read", "readinto", "sleep", "poll",
               "_wait_for_tstate_lock", "run_forever", "_run_once", "get", "next", "readline",
               "wait_for", "communicate", "_try_wait", "waitpid", "do_handshake", "sendall", "send",
               "_recv_into", "_read_status", "_sample_loop"}
CLK_TCK = os.sysconf("SC_CLK_TCK")


POD_NAME = re.compile(r".*-[0-9a-f]{10}-[a-z0-9]{5}$")   # kubelet threads named after a pod


def group_of(name):
    if name.startswith("pod-") or POD_NAME.match(name):
        return "pod workers"
    m = re.match(r"Thread-\d+ \((.*)\)$", name)      # unnamed threads: "Thread-7 (_serve_conn)"
    if m:
        return "api connections" if m.group(1) == "_serve_conn" else m.group(1)
    return name


def thread_cpu(tid):
    try:
        with open("/proc/self/task/%d/stat" % tid) as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Sampler:
    def __init__(self, out, interval):
        self.out = out
        self.interval = interval
        self.self_counts = collections.Counter()
        self.cum_counts = collections.Counter()
        self.group_samples = collections.Counter()
        self.cpu = {}            # tid -> (group, last cpu seconds)
        self.lock_waits = collections.Counter()
        self.busy = 0
        self.idle = 0
        self.started = time.monotonic()
        self.cpu_base = {}       # tid -> cpu seconds at the last reset
        self.me = None
        self.lock = threading.Lock()
        self.errors = 0
        self.last_error = None

    def _frame_key(self, code):
        fn = code.co_filename
        if "/kubesimlib/" in fn:
            fn = "kubesimlib/" + fn.rsplit("/kubesimlib/", 1)[1]
        else:
            fn = os.path.basename(fn)
        return "%s:%s" % (fn, code.co_name)

    def _sample_loop(self):
        self.me = threading.get_ident()
        last_cpu = 0.0
        while True:
            time.sleep(self.interval)
            with self.lock:
                try:
                    self._sample_once()
                except Exception as e:  # noqa: BLE001 - a profiler must not die quietly
                    self.errors += 1
                    self.last_error = traceback.format_exc(limit=-3)
                now = time.monotonic()
                if now - last_cpu >= 1.0:
                    last_cpu = now
                    self._read_cpu()

    def _sample_once(self):
        names = {t.ident: t for t in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            if ident == self.me:
                continue
            t = names.get(ident)
            if frame.f_code.co_name in IDLE_LEAVES:
                self.idle += 1
                continue
            grp = group_of(t.name if t else "?")
            src = linecache.getline(frame.f_code.co_filename, frame.f_lineno or 0)
            if "with " in src and "lock" in src:     # blocked on a lock (the store's, mostly)
                self.lock_waits[grp] += 1
                continue
            self.busy += 1
            self.group_samples[grp] += 1
            leaf = self._frame_key(frame.f_code)
            self.self_counts[leaf] += 1
            seen = set()
            f = frame
            depth = 0
            while f is not None and depth < 60:
                k = self._frame_key(f.f_code)
                if k not in seen:
                    seen.add(k)
                    self.cum_counts[k] += 1
                f = f.f_back
                depth += 1

    def _read_cpu(self):
        for t in threading.enumerate():
            tid = getattr(t, "native_id", None)
            if tid is None:
                continue
            c = thread_cpu(tid)
            if c is not None:
                self.cpu[tid] = (group_of(t.name), c)

    def report(self, out=None, reset=False):
        """Writes what was seen since the last reset to `out` (default: the final file)."""
        out = out or self.out
        with self.lock:
            self._read_cpu()
            by_group = collections.Counter()
            for tid, (grp, c) in self.cpu.items():
                by_group[grp] += c - self.cpu_base.get(tid, 0.0)
            doc = {
                "wall_s": time.monotonic() - self.started,
                "cpu_by_group_s": {k: round(v, 2) for k, v in by_group.most_common()},
                "busy_samples": self.busy, "idle_samples": self.idle,
                "lock_wait_samples": dict(self.lock_waits.most_common()),
                "samples_by_group": dict(self.group_samples.most_common()),
                "top_self": self.self_counts.most_common(40),
                "top_cum": self.cum_counts.most_common(60),
                "sampler_errors": self.errors, "sampler_last_error": self.last_error,
            }
            if reset:
                self.self_counts.clear()
                self.cum_counts.clear()
                self.group_samples.clear()
                self.lock_waits.clear()
                self.busy = self.idle = 0
                self.started = time.monotonic()
                self.cpu_base = {tid: c for tid, (_g, c) in self.cpu.items()}
        with open(out + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(out + ".tmp", out)

    def on_usr1(self, _signum, _frame):
        """The phase named in <out>.phase is over: write <out>.<phase>.json and start afresh."""
        try:
            with open(self.out + ".phase") as f:
                phase = f.read().strip() or "phase"
        except OSError:
            phase = "phase"
        threading.Thread(target=self.report, args=(self.out + "." + phase + ".json", True),
                         daemon=True).start()


if __name__ == "__main__":
    out = os.environ.get("KUBESIM_PROFILE_OUT")
    sampler = None
    if out:
        sampler = Sampler(out, float(os.environ.get("KUBESIM_PROFILE_INTERVAL", "0.01")))
        threading.Thread(target=sampler._sample_loop, name="profiler", daemon=True).start()
        signal.signal(signal.SIGUSR1, sampler.on_usr1)
    try:
        rc = main(sys.argv[1:])
    finally:
        if sampler:
            sampler.report()
    sys.exit(rc)
