// Package testproc helps tests that run Tako's programs as real processes
// find them again: a process started by another process (a tako-cluster's
// child) is known only by its command line.
package testproc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// PID returns the PID of the one process whose command line contains match,
// or an error when none or several do. match must be unique to the caller,
// such as a test's temporary directory: the processes of other tests, and
// of containers, share /proc.
func PID(match string) (int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, fmt.Errorf("testproc: listing processes: %w", err)
	}
	var found []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue // it ended meanwhile
		}
		if strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), match) {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		return 0, fmt.Errorf("testproc: %d processes match %q, want 1", len(found), match)
	}
	return found[0], nil
}
