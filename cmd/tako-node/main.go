// Command tako-node runs one Tako node: a replica that stores data and
// coordinates the requests it receives across the key's replicas. Run
// tako-node -h for its flags.
package main

import (
	"os"

	"github.com/takodb/tako/internal/programs"
)

func main() { programs.Node(os.Args[1:]) }
