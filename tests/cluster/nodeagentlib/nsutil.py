"""Linux namespace and mount calls the standard library lacks (Python 3.11): setns, unshare,
mount, umount2, prctl(PR_SET_PDEATHSIG)."""
import ctypes
import os
import signal

CLONE_NEWNS = 0x00020000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc, what):
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def setns_fd(fd, nstype, what="setns"):
    _check(_libc.setns(fd, nstype), what)


def setns_path(path, nstype):
    fd = os.open(path, os.O_RDONLY)
    try:
        setns_fd(fd, nstype, "setns " + path)
    finally:
        os.close(fd)


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def mount(src, target, fstype, flags, data=None):
    enc = lambda s: s.encode() if s is not None else None  # noqa: E731
    _check(_libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           "mount %s on %s" % (src, target))


def umount2(target, flags):
    _check(_libc.umount2(target.encode(), flags), "umount " + target)


def die_with_parent():
    """SIGKILL this process when the thread that started it ends (so pods never outlive the agent)."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
