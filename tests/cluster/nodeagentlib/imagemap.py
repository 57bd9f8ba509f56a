"""The image map both simulated kubelets share (kubesim's and the node agent): an image name
stands for a local command, so a test's "container" can be any script.

The file maps image -> argv list, or -> {"argv": [...], "startDelayMs": N, "env": {...}}
(optionally under a top-level "images" key). In argv, "$@" is replaced by the container's
command + args, and $VAR, ${VAR} and $(VAR) are expanded from the container's environment."""
import json
import logging
import os
import re
import threading

log = logging.getLogger("imagemap")


class ImageMap:
    """image -> {"argv": [...], "startDelayMs": N, "env": {...}}, re-read when the file changes.

    Values may be a bare argv list. Lookup tries the exact image, then the image without its
    tag or digest."""

    def __init__(self, path):
        self.path = path
        self.mtime = None
        self.images = {}
        self.lock = threading.Lock()

    def lookup(self, image):
        with self.lock:
            if self.path:
                try:
                    m = os.stat(self.path).st_mtime_ns
                    if m != self.mtime:
                        with open(self.path) as f:
                            doc = json.load(f)
                        self.images = doc.get("images", doc) if isinstance(doc, dict) else {}
                        self.mtime = m
                except (OSError, ValueError) as e:
                    log.warning("image map %s unreadable: %s", self.path, e)
            for key in (image, image.split("@")[0], strip_tag(image)):
                if key in self.images:
                    v = self.images[key]
                    return {"argv": v} if isinstance(v, list) else v
        return None


def strip_tag(image):
    base = image.split("@")[0]
    last = base.rsplit("/", 1)
    if ":" in last[-1]:
        return base[: len(base) - len(last[-1]) + last[-1].index(":")]
    return base


def expand(s, env):
    """$VAR, ${VAR} and $(VAR) from env; unknown names are left as they are."""
    def rep(m):
        name = m.group(1) or m.group(2) or m.group(3)
        return env.get(name, m.group(0))
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", rep, s)


def command_argv(entry, cspec, env):
    """The argv a container runs: the image map entry's argv, "$@" replaced by the container's
    command + args, every word expanded from env."""
    argv = []
    for a in entry.get("argv") or []:
        if a == "$@":
            argv += [expand(x, env) for x in (cspec.get("command") or []) + (cspec.get("args") or [])]
        else:
            argv.append(expand(a, env))
    return argv
