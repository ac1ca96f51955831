// Command tako-proxy serves Tako's HTTP API in front of a cluster. Run
// tako-proxy -h for its flags.
package main

import (
	"os"

	"github.com/takodb/tako/internal/programs"
)

func main() { programs.Proxy(os.Args[1:]) }
