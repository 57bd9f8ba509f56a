"""The test cluster's tests: a package, so its conftest is imported as cluster.conftest and its
test_cluster as cluster.test_cluster, and neither shadows tests/kubesim's modules of the same
names (whose test modules do `from conftest import ...`). Its helpers are imported flat
(`import clusterlib`), as scripts/cluster imports them."""
