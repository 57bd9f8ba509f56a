"""The test cluster's tests: a package, so its conftest is imported as cluster.conftest and its
test_cluster as cluster.test_cluster, and neither shadows another test directory's modules of the
same names. Its helpers are imported flat (`import clusterlib`), as scripts/cluster imports
them."""
