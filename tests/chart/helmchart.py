"""helm/holdfast rendered by Helm itself (`helm template`), with the helm binary the test
cluster's tools build (tests/cluster/tools/build, docs/test-cluster.md).

render_chart returns [(source, text)], one per document, in the order `helm template` prints
them (Helm's install order; hooks last), `source` being the `# Source:` line."""
import os
import re
import subprocess

import yaml

from clusterlib import bin_dir

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

_helm = None


class HelmError(Exception):
    pass


def helm():
    """The helm binary (built into the tools cache first if it is not there)."""
    global _helm
    if _helm is None:
        _helm = os.path.join(bin_dir(), "helm")
    return _helm


def run_helm(*args, check=True):
    """helm ARGS with a private HOME for its caches; (exit status, stdout, stderr)."""
    env = dict(os.environ, HELM_CACHE_HOME="/tmp/holdfast-helm/cache",
               HELM_CONFIG_HOME="/tmp/holdfast-helm/config", HELM_DATA_HOME="/tmp/holdfast-helm/data")
    r = subprocess.run([helm()] + list(args), capture_output=True, text=True, env=env, timeout=120)
    if check and r.returncode != 0:
        raise HelmError("helm %s: exit %d\n%s" % (" ".join(args), r.returncode, r.stderr))
    return r.returncode, r.stdout, r.stderr


def template_args(chart_dir, release="holdfast", namespace="default", value_files=(), sets=(),
                  set_strings=(), include_crds=False, no_hooks=False):
    args = ["template", release, chart_dir, "--namespace", namespace]
    for f in value_files:
        args += ["--values", f]
    for s in sets:
        args += ["--set", s]
    for s in set_strings:
        args += ["--set-string", s]
    if include_crds:
        args.append("--include-crds")
    if no_hooks:
        args.append("--no-hooks")
    return args


def render_chart(chart_dir, release="holdfast", namespace="default", value_files=(), sets=(),
                 set_strings=(), include_crds=False, no_hooks=False):
    _, out, _ = run_helm(*template_args(chart_dir, release, namespace, value_files, sets,
                                        set_strings, include_crds, no_hooks))
    docs = []
    for doc in re.split(r"(?m)^---[ \t]*$", out):
        m = re.search(r"(?m)^# Source: (.*)$", doc)
        body = "\n".join(ln for ln in doc.splitlines() if not ln.startswith("# Source:")).strip("\n")
        if not body.strip() or yaml.safe_load(body) is None:
            continue
        docs.append((m.group(1) if m else "?", body + "\n"))
    return docs
