// Command tako-coordinator serves one configuration to every node and proxy
// of a Tako cluster. Run tako-coordinator -h for its flags.
package main

import (
	"os"

	"github.com/takodb/tako/internal/programs"
)

func main() { programs.Coordinator(os.Args[1:]) }
