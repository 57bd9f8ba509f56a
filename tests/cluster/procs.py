"""The test cluster's daemons: how they are started, recognised and stopped.

Each daemon is started in a session of its own (setsid), inside a network namespace
(`ip netns exec NS`, or `nsenter --net=/run/netns/NS` for one that must share the host's mount
namespace; both exec the program, so the PID is the program's), with its output in
LOGS/NAME.log. Its PID goes to PIDS/NAME.pid, its start time (clock ticks since boot, field 22
of /proc/PID/stat) to PIDS/NAME.start, its argv to PIDS/NAME.argv.

This machine is shared, so a daemon is signalled only by PID, and only while that PID still
has the recorded start time: a PID reused by somebody else's process is left alone. Processes
the daemon started (a supervised child, a pod's processes) share its session; `session_members`
finds them even after the daemon itself has died, since a session ID cannot be handed out
again while any process of the session lives.
"""
import json
import os
import signal
import subprocess
import time


def _stat(pid):
    """The fields of /proc/PID/stat after the command name (field 3 first), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return data[data.rindex(")") + 2:].split()


def start_time(pid):
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def parent(pid):
    fields = _stat(pid)
    return None if fields is None else int(fields[1])


def alive(pid, start):
    """True if PID is running (not a zombie) and is the process that started at `start`."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X") and int(fields[19]) == start


def session_members(sid):
    """PIDs of the live processes whose session ID is sid."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        fields = _stat(int(name))
        if fields is not None and fields[0] not in ("Z", "X") and int(fields[3]) == sid:
            out.append(int(name))
    return out


def _reap(pid):
    """Collects the exit status of pid if it is a child of this process (a daemon started by a
    long-lived caller, such as a test that called up() itself), so that no zombie stays.
    Returns False while pid is a child that has not finished exiting (a multi-threaded
    program's main thread shows as a zombie before its other threads are gone)."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != 0
    except ChildProcessError:
        return True


class Daemons:
    """The daemons recorded in a state directory: PIDS/NAME.{pid,start}, LOGS/NAME.log."""

    def __init__(self, pids_dir, logs_dir):
        self.pids_dir = pids_dir
        self.logs_dir = logs_dir

    def log_path(self, name):
        return os.path.join(self.logs_dir, name + ".log")

    def start(self, name, argv, netns, env=None, cwd=None, host_mounts=False):
        """Starts argv inside netns in a new session; returns its PID.

        `ip netns exec` (the default) also gives the program a mount namespace of its own, with
        /sys of netns mounted; host_mounts=True uses `nsenter --net` instead, which changes only
        the network namespace, so the network namespaces the program adds (bind mounts under
        /run/netns) are seen by everyone, as the node agent's pod namespaces must be."""
        os.makedirs(self.pids_dir, exist_ok=True)
        os.makedirs(self.logs_dir, exist_ok=True)
        enter = (["nsenter", "--net=/run/netns/" + netns] if host_mounts
                 else ["ip", "netns", "exec", netns])
        with open(self.log_path(name), "ab") as log:
            p = subprocess.Popen(enter + list(argv), stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                 env=env, cwd=cwd)
        start = start_time(p.pid)
        with open(os.path.join(self.pids_dir, name + ".argv"), "w") as f:
            json.dump(list(argv), f)
        with open(os.path.join(self.pids_dir, name + ".start"), "w") as f:
            f.write("%d\n" % (start if start is not None else -1))
        with open(os.path.join(self.pids_dir, name + ".pid"), "w") as f:
            f.write("%d\n" % p.pid)
        # The daemon outlives this process, so the Popen object must not warn about it;
        # if this process lives longer than the daemon, `reap` collects it after a stop.
        p.returncode = 0
        return p.pid

    def recorded(self):
        """[(name, pid, start)] of every daemon recorded, in the order they were started."""
        out = []
        try:
            names = os.listdir(self.pids_dir)
        except FileNotFoundError:
            return out
        for fn in names:
            if not fn.endswith(".pid"):
                continue
            name = fn[:-4]
            try:
                with open(os.path.join(self.pids_dir, fn)) as f:
                    pid = int(f.read().strip())
                with open(os.path.join(self.pids_dir, name + ".start")) as f:
                    start = int(f.read().strip())
            except (OSError, ValueError):
                continue
            out.append((name, pid, start, os.path.getmtime(os.path.join(self.pids_dir, fn))))
        out.sort(key=lambda r: r[3])
        return [(name, pid, start) for name, pid, start, _ in out]

    def argv(self, name):
        """The argv the daemon was started with (to start it again after a stop)."""
        with open(os.path.join(self.pids_dir, name + ".argv")) as f:
            return json.load(f)

    def get(self, name):
        for n, pid, start in self.recorded():
            if n == name:
                return pid, start
        return None

    def is_running(self, name):
        r = self.get(name)
        return r is not None and alive(*r)

    def forget(self, name):
        for ext in (".pid", ".start", ".argv"):
            try:
                os.unlink(os.path.join(self.pids_dir, name + ext))
            except FileNotFoundError:
                pass

    def stop(self, names, grace):
        """SIGTERM to each named daemon still ours, then waits up to grace seconds for all of
        them, then SIGKILL to those left (and to their sessions). Returns {name: how it ended}."""
        targets = {}
        for name in names:
            r = self.get(name)
            if r is None:
                continue
            pid, start = r
            if alive(pid, start):
                try:
                    os.kill(pid, signal.SIGTERM)
                    targets[name] = (pid, start)
                except ProcessLookupError:
                    pass
        result = {name: "not running" for name in names if self.get(name) is not None}
        deadline = time.monotonic() + grace
        while targets and time.monotonic() < deadline:
            for name, (pid, start) in list(targets.items()):
                if not alive(pid, start):
                    result[name] = "stopped"
                    del targets[name]
            if targets:
                time.sleep(0.05)
        for name, (pid, start) in targets.items():
            if alive(pid, start):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            result[name] = "killed after %gs" % grace
        deadline = time.monotonic() + 5
        while any(alive(pid, start) for pid, start in targets.values()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return result

    def reap(self, timeout=5):
        """Waits (bounded) for every recorded daemon that is a child of this process to finish
        exiting, and collects it."""
        pending = [pid for _, pid, _ in self.recorded()]
        deadline = time.monotonic() + timeout
        while True:
            pending = [pid for pid in pending if not _reap(pid)]
            if not pending or time.monotonic() >= deadline:
                return
            time.sleep(0.05)

    def kill_sessions(self):
        """SIGKILL to every live process left in a recorded daemon's session (its children),
        when the daemon itself is gone or still ours. Returns the PIDs signalled."""
        killed = []
        for name, pid, start in self.recorded():
            fields = _stat(pid)
            if fields is not None and fields[0] not in ("Z", "X") and int(fields[19]) != start:
                continue  # the PID belongs to someone else now, and so does its session
            for member in session_members(pid):
                try:
                    os.kill(member, signal.SIGKILL)
                    killed.append(member)
                except ProcessLookupError:
                    pass
        return killed
