"""Fixtures for the integration tests: they drive the real holdfast binary with real processes.

- `addrs`: free ports on distinct loopback addresses (127.0.1.x backends, 127.0.3.x holdfast
  listeners, 127.0.0.1 admin), so tests never share a port and TIME_WAIT never gets in the way.
- `holdfast`: a factory; `holdfast.start(config)` writes the config JSON, starts the binary,
  waits for /readyz, and parses its JSON log lines. At teardown the process is stopped (SIGTERM,
  then harder), every wake process group it started is killed, and the test fails if holdfast's
  stderr holds an AddressSanitizer / UndefinedBehaviorSanitizer / LeakSanitizer report.
- `backend_cmd(...)`: the argv of a helper backend (tests/integration/backends/backend.py) to use
  as a wake command.

Every wait is bounded polling (`wait_for`); nothing asserts a duration.
"""
import pytest

from hftest import PYTHON
from hftest.holdfast import Holdfast
from hftest.net import Addrs, hp
from hflib import BACKEND


@pytest.fixture
def addrs():
    return Addrs()


@pytest.fixture
def backend_cmd():
    def make(mode, listen, name, *extra, wake_file=None, gate=None):
        argv = [PYTHON, BACKEND, mode, "--listen", hp(listen), "--name", name]
        if wake_file:
            argv += ["--wake-file", str(wake_file)]
        if gate:
            argv += ["--gate", str(gate)]
        return argv + [str(e) for e in extra]
    return make


@pytest.fixture
def holdfast(tmp_path, addrs):
    class Factory:
        instances = []

        def start(self, config, **kw):
            h = Holdfast(tmp_path / f"hf{len(self.instances)}", addrs)
            h.tmp.mkdir()
            self.instances.append(h)
            return h.start(config, **kw)

    factory = Factory()
    yield factory
    reports = []
    for h in factory.instances:
        h.stop()
        rep = h.sanitizer_report()
        if rep:
            reports.append(rep)
    if reports:
        pytest.fail("holdfast's stderr holds a sanitizer report:\n" + "\n".join(reports),
                    pytrace=False)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """A failing test shows the tail of every holdfast log it produced."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    factory = getattr(item, "funcargs", {}).get("holdfast")
    for i, h in enumerate(getattr(factory, "instances", [])):
        rep.sections.append((f"holdfast {i} stderr (tail)", h.stderr_text()[-15000:]))


