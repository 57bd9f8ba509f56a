"""What docs/architecture.md says about the layout is true of the source tree.

- The planes meet at one seam: nothing outside resolver/ includes a header of resolver/ other
  than resolver/dataplane.h.
- The generic Kubernetes client (controller/kube/) knows nothing of holdfast: it includes only
  common/ and itself. common/ includes only common/.
- The data plane includes nothing of the control planes, the Kubernetes control plane nothing of
  the standalone one (and the reverse), and neither plane the process's wiring (process/).
- Every C file of the product is named in docs/architecture.md, so the map lists every place.

Tests and benchmarks may reach inside (they drive internals on purpose); only the product's
folders are checked.

Run with Debian's python3: /usr/bin/python3 -m pytest tests/docs
"""
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
FOLDERS = ["common", "resolver", "controller", "controller/kube", "standalone", "process"]
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def sources():
    """(folder, path relative to the repo) of every .c and .h of the product."""
    for folder in FOLDERS:
        d = os.path.join(REPO, folder)
        for name in sorted(os.listdir(d)):
            if name.endswith((".c", ".h")):
                yield folder, f"{folder}/{name}"


def includes(rel):
    with open(os.path.join(REPO, rel), encoding="utf-8") as f:
        return INCLUDE.findall(f.read())


def folder_of(header):
    """The product folder a project header belongs to, or None (a system or third-party one)."""
    parts = header.split("/")
    if len(parts) >= 3 and parts[0] == "controller" and parts[1] == "kube":
        return "controller/kube"
    if len(parts) >= 2 and parts[0] in FOLDERS:
        return parts[0]
    return None


# What each folder may include, besides itself (None: anything).
ALLOWED = {
    "common": {"common"},
    "controller/kube": {"common"},
    "resolver": {"common"},
    "controller": {"common", "controller/kube", "resolver"},
    "standalone": {"common", "resolver"},
    "process": None,
}


def test_every_folder_exists():
    for folder in FOLDERS:
        assert os.path.isdir(os.path.join(REPO, folder)), folder


def test_only_dataplane_h_is_included_from_outside_the_data_plane():
    wrong = []
    for folder, rel in sources():
        if folder == "resolver":
            continue
        for h in includes(rel):
            if folder_of(h) == "resolver" and h != "resolver/dataplane.h":
                wrong.append(f"{rel} includes {h}")
    assert not wrong, "the data plane's one face is resolver/dataplane.h:\n" + "\n".join(wrong)


def test_each_folder_includes_only_what_the_layout_allows():
    wrong = []
    for folder, rel in sources():
        allowed = ALLOWED[folder]
        if allowed is None:
            continue
        for h in includes(rel):
            owner = folder_of(h)
            if owner is None or owner == folder:
                continue
            if owner not in allowed:
                wrong.append(f"{rel} ({folder}) includes {h} ({owner})")
    assert not wrong, "\n".join(wrong)


def test_architecture_md_names_every_c_file():
    with open(os.path.join(REPO, "docs", "architecture.md"), encoding="utf-8") as f:
        doc = f.read()
    missing = [rel for _, rel in sources() if rel.endswith(".c") and rel not in doc]
    assert not missing, "docs/architecture.md does not name: " + ", ".join(missing)
