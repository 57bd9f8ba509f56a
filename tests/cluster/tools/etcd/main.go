// The etcd server, built from the go.etcd.io/etcd/server/v3 module at the version in go.mod.
// etcd's own main module replaces its siblings with local paths, so `go install` refuses it;
// this one-line main is the same as etcd's.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
