"""Dockerfile: the runtime stage installs exactly the Debian packages of the shared libraries the
built holdfast links (it cannot be built here: no container engine), and the rest of its shape."""
import os
import re
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
HOLDFAST = os.environ.get("HOLDFAST_BIN") or os.path.join(ROOT, "build", "holdfast")
LIBC = {"libc.so.6", "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1", "libm.so.6", "libpthread.so.0",
        "libdl.so.2", "librt.so.1", "linux-vdso.so.1"}

needs_binary = pytest.mark.skipif(not os.access(HOLDFAST, os.X_OK), reason="no holdfast binary at %s" % HOLDFAST)


def stages():
    """[(FROM line, [RUN/COPY/USER/... lines joined across continuations])]."""
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        text = re.sub(r"\\\n", " ", f.read())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            out.append((line, []))
        else:
            out[-1][1].append(line)
    return out


def apt_packages(lines):
    pkgs = []
    for line in lines:
        for m in re.finditer(r"apt-get install ([^&;]*)", line):
            pkgs += [w for w in m.group(1).split() if not w.startswith("-")]
    return pkgs


def direct_libraries():
    """{soname: resolved path} of the binary's DT_NEEDED entries, resolved by ldd."""
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]",
                        subprocess.run(["readelf", "-d", HOLDFAST], capture_output=True, text=True,
                                       check=True).stdout)
    ldd = subprocess.run(["ldd", HOLDFAST], capture_output=True, text=True, check=True).stdout
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    assert needed, "readelf found no NEEDED entries"
    return {n: paths.get(n) for n in needed if n not in LIBC}


def package_of(path):
    out = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if out.returncode != 0:
        real = os.path.realpath(path)
        out = subprocess.run(["dpkg", "-S", real], capture_output=True, text=True)
        if out.returncode != 0 and real.startswith("/lib/"):
            out = subprocess.run(["dpkg", "-S", "/usr" + real], capture_output=True, text=True)
    assert out.returncode == 0, "no Debian package owns %s: %s" % (path, out.stderr)
    return out.stdout.split(":", 1)[0].strip()


def test_dockerfile_shape():
    st = stages()
    assert len(st) == 2, "build stage and runtime stage"
    (build_from, build), (run_from, run) = st
    assert re.match(r"FROM debian:bookworm\S* AS build", build_from, re.I)
    assert run_from == "FROM debian:bookworm-slim"
    bpkgs = set(apt_packages(build))
    assert {"meson", "ninja-build", "pkg-config", "libevent-dev", "node-llhttp", "libcurl4-openssl-dev",
            "libcjson-dev", "libpcre2-dev", "libyaml-dev"} <= bpkgs
    assert any("meson setup" in ln for ln in build) and any("meson compile" in ln for ln in build)
    assert not any(p.endswith("-dev") or p in ("build-essential", "meson") for p in apt_packages(run))
    assert "ca-certificates" in apt_packages(run)
    assert "USER 65532:65532" in run or "USER 65532" in run
    entry = [ln for ln in run if ln.startswith("ENTRYPOINT")]
    assert entry and "holdfast" in entry[0]
    assert any(ln.startswith("COPY --from=build") for ln in run)


@needs_binary
def test_runtime_stage_installs_exactly_the_linked_libraries():
    libs = direct_libraries()
    want = {}
    for soname, path in libs.items():
        assert path and path != "not", "ldd cannot resolve %s" % soname
        want.setdefault(package_of(path), []).append(soname)
    runtime = set(apt_packages(stages()[1][1])) - {"ca-certificates"}
    assert runtime == set(want), (
        "runtime stage packages %s, but holdfast links %s (package: sonames)" % (sorted(runtime), want))


def installed_depends(pkg):
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}, ${Pre-Depends}", pkg],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return set()
    deps = set()
    for alt in out.stdout.split(","):
        for name in alt.split("|"):
            name = re.sub(r"\(.*?\)", "", name).strip().split(":")[0]
            if name:
                deps.add(name)
    return deps


@needs_binary
def test_every_library_loaded_comes_with_the_runtime_packages():
    """ldd's whole closure (libcurl's TLS, Kerberos, ...) is pulled in by the runtime packages'
    own dependencies, so nothing has to be listed by hand."""
    runtime = set(apt_packages(stages()[1][1]))
    closure, todo = set(), list(runtime | {"libc6"})
    while todo:
        p = todo.pop()
        if p in closure:
            continue
        closure.add(p)
        todo += sorted(installed_depends(p) - closure)
    ldd = subprocess.run(["ldd", HOLDFAST], capture_output=True, text=True, check=True).stdout
    for soname, path in re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M):
        if soname in LIBC:
            continue
        pkg = package_of(path)
        assert pkg in closure, "%s (%s) is not a dependency of the runtime packages" % (soname, pkg)
