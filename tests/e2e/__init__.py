"""The end-to-end suite: a package, so its conftest is imported as e2e.conftest and never
shadows another test directory's conftest."""
