"""The end-to-end suite: a package, so its conftest is imported as e2e.conftest and never
shadows tests/kubesim/conftest.py (whose test modules do `from conftest import ...`)."""
