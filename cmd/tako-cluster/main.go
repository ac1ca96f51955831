// Command tako-cluster runs every node of a configuration and a proxy on
// this machine, for development and trials. Run tako-cluster -h for its
// flags.
package main

import (
	"os"

	"github.com/takodb/tako/internal/programs"
)

func main() { programs.Cluster(os.Args[1:]) }
