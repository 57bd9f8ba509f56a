"""Puts the shared test-support package (tests/hftest) and the test cluster's own program
(tests/cluster) on sys.path, for the scripts of this folder that run by themselves (pytest does
the same through pytest.ini's `pythonpath`). A script imports it first: `import _path`."""
import os
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
for _p in (os.path.join(_REPO, "tests"), os.path.join(_REPO, "tests", "cluster")):
    if _p not in sys.path:
        sys.path.insert(1, _p)  # after the script's own folder
