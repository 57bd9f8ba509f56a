"""The randomized soak (tests/soak/soak.py, tests/soak/README.md) as a pytest test, for CI:
scripts/test runs it in its ASan pass, against the ASan+UBSan holdfast ($HOLDFAST_BIN).

    SOAK_SEED=N        replay the sequence of operations of seed N (default, or "random": a new
                       seed, printed; scripts/test passes 4 unless told otherwise)
    SOAK_SECONDS=N     seconds of operations (default 180); setting up and settling add about 40 s
    SOAK_XFAIL=a,b     invariants to report without failing (never set in CI)
    SOAK_LOG_LEVEL=L   holdfast's --log-level (default info)

It runs on the real control plane (tests/cluster: as root, in network namespaces of its own).

The seed is printed first, in every violation and in the failure message; the work directory
(kept when the test fails) holds the report, every failed request, the operation log, and the
logs of the cluster's components and pods, Prometheus and every holdfast replica.
"""
import os
import random
import shutil

import pytest

import soak

HERE = os.path.dirname(os.path.abspath(__file__))


def test_randomized_soak_keeps_every_invariant(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the soak's test cluster needs root (network namespaces)")
    binary = soak.holdfast_bin()
    if not soak.is_sanitized(binary):
        pytest.fail("the soak runs against the ASan+UBSan holdfast: set HOLDFAST_BIN (e.g. "
                    "build-asan/holdfast; %s is not one)" % binary, pytrace=False)
    given = os.environ.get("SOAK_SEED", "")
    seed = int(given) if given and given != "random" else random.SystemRandom().randrange(1, 1 << 31)
    seconds = int(os.environ.get("SOAK_SECONDS", "180"))
    xfail = soak.parse_xfail(os.environ.get("SOAK_XFAIL", ""))
    workdir = tmp_path_factory.mktemp("soak-%d" % seed)
    print("soak seed %d (replay: SOAK_SEED=%d SOAK_SECONDS=%d)" % (seed, seed, seconds))
    ok, run = soak.run_soak(seed, seconds, workdir, xfail,
                            log_level=os.environ.get("SOAK_LOG_LEVEL", "info"))
    if ok:
        shutil.rmtree(str(workdir), ignore_errors=True)
        return
    failing = run.violations.failing()
    names = sorted({v["invariant"] for v in failing})
    text = "\n\n".join(soak.observe.format_violation(v) for v in failing[:12])
    pytest.fail("soak seed %d: %d violation(s) of %s (replay: SOAK_SEED=%d SOAK_SECONDS=%d; "
                "report and logs in %s)\n\n%s%s\n\n%s" % (
                    seed, len(failing), ", ".join(names), seed, seconds, workdir, text,
                    "\n\n... %d more in the report" % (len(failing) - 12) if len(failing) > 12 else "",
                    "\n".join(run.summary())), pytrace=False)
