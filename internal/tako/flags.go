package tako

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"

	"github.com/takodb/tako/internal/cli"
)

// commandFlags returns the flag set of the command name, with -s and
// -timeout, and its usage text: the synopsis after "tako name [flags]" and
// a description that ends with an example.
func (r *runner) commandFlags(name, synopsis, description string) *flag.FlagSet {
	fs := flag.NewFlagSet("tako "+name, flag.ContinueOnError)
	r.serverFlags(fs)
	cli.Usage(fs, "tako "+name+" [flags] "+synopsis, description)
	return fs
}

// parseCommand parses a command's arguments: flags may come before,
// between and after the positional arguments, and "--" ends the flags (for
// a key that starts with "-"). It checks that there are min to max
// positional arguments. -h prints the usage on stdout (errHelpShown).
func (r *runner) parseCommand(fs *flag.FlagSet, args []string, min, max int) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(r.stdout)
			fs.Usage()
			return nil, errHelpShown
		}
		if err != nil {
			return nil, usageError(fs.Name(), err.Error())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	switch {
	case len(pos) < min:
		return nil, usageError(fs.Name(), fmt.Sprintf("want %s, got %d", argCount(min, max), len(pos)))
	case len(pos) > max:
		return nil, usageError(fs.Name(), fmt.Sprintf("want %s, got %d: %q", argCount(min, max), len(pos), pos))
	}
	return pos, nil
}

// argCount says how many arguments a command takes.
func argCount(min, max int) string {
	switch {
	case min == max && min == 1:
		return "1 argument"
	case min == max:
		return fmt.Sprintf("%d arguments", min)
	case max == math.MaxInt && min == 1:
		return "at least 1 argument"
	case max == math.MaxInt:
		return fmt.Sprintf("at least %d arguments", min)
	}
	return fmt.Sprintf("%d to %d arguments", min, max)
}
