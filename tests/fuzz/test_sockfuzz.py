"""Runs the socket fuzzer (sockfuzz.py) against HOLDFAST_BIN for a bounded time.

    HOLDFAST_BIN=build-asan/holdfast /usr/bin/python3 -m pytest -p no:cacheprovider tests/fuzz

SOCKFUZZ_SECONDS (default 45) sets the fuzzing time, SOCKFUZZ_SEED replays a seed,
SOCKFUZZ_CLIENTS the client threads (default 12), SOCKFUZZ_SKIP plan kinds not to generate
(sockfuzz.py --skip), SOCKFUZZ_ARTIFACTS where a failure's log, config and connections are kept
(default: the test's tmp_path, printed)."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


def holdfast_bin():
    return os.environ.get("HOLDFAST_BIN", os.path.join(REPO, "build-asan", "holdfast"))


def test_sockfuzz(tmp_path):
    seconds = float(os.environ.get("SOCKFUZZ_SECONDS", "45"))
    artifacts = os.environ.get("SOCKFUZZ_ARTIFACTS", str(tmp_path / "artifacts"))
    cmd = [PYTHON, os.path.join(HERE, "sockfuzz.py"), "--holdfast", holdfast_bin(),
           "--seconds", str(seconds), "--clients", os.environ.get("SOCKFUZZ_CLIENTS", "12"),
           "--artifacts", artifacts]
    if os.environ.get("SOCKFUZZ_SEED"):
        cmd += ["--seed", os.environ["SOCKFUZZ_SEED"]]
    if os.environ.get("SOCKFUZZ_SKIP"):
        cmd += ["--skip", os.environ["SOCKFUZZ_SKIP"]]
    # Fuzzing time, then at most: quiescence wait (~20 s), drain (~35 s), startup and stop.
    r = subprocess.run(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=seconds + 180)
    out = r.stdout.decode(errors="replace")
    print(out)
    assert r.returncode == 0, f"sockfuzz failed (exit {r.returncode}):\n{out}"
