#!/usr/bin/python3
"""Starts one container process: run by the node agent, it enters the pod's network namespace,
makes a private mount namespace with the pod's volumes bind-mounted where the container expects
them, and execs the container's command. Its environment is the container's.

    podexec.py --parent PID --netns NAME [--mount SRC:DST[:ro]]... [--cwd DIR] -- ARGV...

A mount target that does not exist is made without touching the host's files: its deepest
existing ancestor (never "/") is covered, in the private namespace only, by a tmpfs that
bind-mounts back every entry the ancestor had, and the missing directories are made on that
tmpfs. So /var/run/secrets/kubernetes.io/serviceaccount appears for the container alone.

Exits 128 (as a container runtime's start error) if any step fails, with the reason on stderr,
which the agent writes to the container's log."""
import os
import sys

import nsutil  # beside this script (run by itself: its folder is first on sys.path)


def cover(anc, stage):
    """Covers directory anc with a tmpfs holding bind mounts of everything anc held."""
    nsutil.mount("tmpfs", stage, "tmpfs", 0, "mode=755")
    for name in os.listdir(anc):
        src, dst = os.path.join(anc, name), os.path.join(stage, name)
        if os.path.islink(src):
            os.symlink(os.readlink(src), dst)
            continue
        if os.path.isdir(src):
            os.mkdir(dst)
        else:
            open(dst, "w").close()
        nsutil.mount(src, dst, None, nsutil.MS_BIND | nsutil.MS_REC)
    nsutil.mount(stage, anc, None, nsutil.MS_MOVE)


def bind(src, dst, ro, stage):
    dst = os.path.realpath(dst)
    if not os.path.exists(dst):
        anc = dst
        while not os.path.exists(anc):
            anc = os.path.dirname(anc)
        if anc == "/":
            raise OSError("cannot make mount point %s: its only existing ancestor is /" % dst)
        cover(anc, stage)
        if os.path.isdir(src):
            os.makedirs(dst)
        else:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            open(dst, "w").close()
    nsutil.mount(src, dst, None, nsutil.MS_BIND)
    if ro:
        nsutil.mount(None, dst, None, nsutil.MS_BIND | nsutil.MS_REMOUNT | nsutil.MS_RDONLY)


def main(args):
    sep = args.index("--")
    opts, argv = args[:sep], args[sep + 1:]
    parent, netns, cwd, mounts, stage = None, None, "/", [], None
    i = 0
    while i < len(opts):
        k, v = opts[i], opts[i + 1]
        i += 2
        if k == "--parent":
            parent = int(v)
        elif k == "--netns":
            netns = v
        elif k == "--cwd":
            cwd = v
        elif k == "--stage":
            stage = v
        elif k == "--mount":
            parts = v.split(":")
            mounts.append((parts[0], parts[1], len(parts) > 2 and parts[2] == "ro"))
    nsutil.die_with_parent()
    if parent is not None and os.getppid() != parent:
        return 128                                   # the agent is already gone
    if netns:
        nsutil.setns_path("/run/netns/" + netns, nsutil.CLONE_NEWNET)
    if mounts:
        nsutil.unshare(nsutil.CLONE_NEWNS)
        nsutil.mount(None, "/", None, nsutil.MS_REC | nsutil.MS_PRIVATE)
        if os.path.ismount("/run/netns"):
            nsutil.umount2("/run/netns", nsutil.MNT_DETACH)   # do not pin other pods' namespaces
        for n, (src, dst, ro) in enumerate(mounts):
            st = os.path.join(stage, str(n))
            os.makedirs(st, exist_ok=True)
            bind(src, dst, ro, st)
    os.chdir(cwd)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Exception as e:  # noqa: BLE001 - any failure is a container start error
        sys.stderr.write("podexec: %s\n" % e)
        sys.exit(128)
