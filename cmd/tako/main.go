// Command tako is the command-line client of a Tako cluster: get, put,
// delete and stat keys, see where a key lives (where), the cluster's status
// from its coordinator (status), and what a configuration change moves
// (plan). Run tako -h for its commands.
package main

import (
	"os"

	"github.com/takodb/tako/internal/tako"
)

func main() {
	os.Exit(tako.Main(os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}
