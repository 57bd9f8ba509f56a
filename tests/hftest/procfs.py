"""procfs: what /proc says of a running process.

    cpu_seconds(pids)        utime+stime of the processes (all their threads), in seconds
    status_value(pid, key)   the number of a /proc/PID/status field (VmRSS, VmHWM in kB; Threads)
    tree_pids(pid)           pid and all its descendants
"""
import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (field 3 on), or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    return s[s.rindex(")") + 2:].split()


def cpu_seconds(pids):
    """utime+stime (all threads) of the given processes, in seconds; a process gone counts 0."""
    total = 0
    for p in pids:
        fields = _stat_fields(p)
        if fields:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def status_value(pid, key):
    """The number of field `key` of /proc/PID/status ("VmHWM": kB, "Threads": a count), None
    when it has none."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def tree_pids(pid):
    """pid and all its descendants (via /proc/*/stat ppid)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        fields = _stat_fields(d)
        if fields:
            children.setdefault(int(fields[1]), []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out
