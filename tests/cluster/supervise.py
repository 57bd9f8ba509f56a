#!/usr/bin/python3
"""Restarts a program when it exits, as the kubelet restarts a static or DaemonSet pod.

    supervise.py --name kube-proxy --child-pid-file F [--max-restarts 30] -- PROGRAM ARGS...

kube-proxy exits on purpose when its Node's addresses change or its Node is deleted, and the
controller-manager and the scheduler exit when they lose their leader lease (an API server
down for longer than the lease's renew deadline, 10 s): each expects to be started again, as
the kubelet does in a real cluster. In the test cluster they run under this.

The child stays in this process's session and process group. Restarts back off (1 s doubling
to 10 s) and stop after --max-restarts. SIGTERM goes on to the child (with SIGCONT, in case it
was paused); the supervisor exits when the child has (SIGKILL after 10 s).
"""
import argparse
import os
import signal
import subprocess
import sys
import time


def log(msg):
    print("supervise: " + msg, flush=True)


def wait_child(child, state):
    """The child's exit code; SIGTERM to it if a stop came before it started, SIGKILL 10 s
    after the stop."""
    if state["stopping"]:
        child.terminate()
    while True:
        try:
            return child.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            if state["stopping"] and time.monotonic() - state["stop_time"] > 10:
                child.kill()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", required=True)
    p.add_argument("--child-pid-file", required=True)
    p.add_argument("--max-restarts", type=int, default=30)
    p.add_argument("argv", nargs="+")
    args = p.parse_args()

    state = {"stopping": False, "stop_time": None, "child": None}

    def on_term(signum, _frame):
        state["stopping"] = True
        state["stop_time"] = time.monotonic()
        if state["child"] is not None and state["child"].poll() is None:
            state["child"].send_signal(signum)
            state["child"].send_signal(signal.SIGCONT)  # a paused child acts on it at once

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    restarts = 0
    backoff = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen(args.argv, stdin=subprocess.DEVNULL)
        state["child"] = child
        with open(args.child_pid_file, "w") as f:
            f.write("%d\n" % child.pid)
        code = wait_child(child, state)
        if state["stopping"]:
            break
        if time.monotonic() - started > 60:
            backoff = 1.0
        if restarts >= args.max_restarts:
            log("%s exited with %d; %d restarts already, giving up" % (args.name, code, restarts))
            sys.exit(1)
        restarts += 1
        log("%s exited with %d; restart %d in %.0f s" % (args.name, code, restarts, backoff))
        deadline = time.monotonic() + backoff
        while not state["stopping"] and time.monotonic() < deadline:
            time.sleep(0.1)
        if state["stopping"]:
            break
        backoff = min(backoff * 2, 10.0)
    try:
        os.unlink(args.child_pid_file)
    except FileNotFoundError:
        pass
    log("%s stopped" % args.name)


if __name__ == "__main__":
    main()
