package testproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestPID finds a child by a unique argument, and refuses a match that no
// process has.
func TestPID(t *testing.T) {
	// tail -f runs until killed, with the marker in its command line, and
	// starts no child (sh -c would fork one, which shares its command line
	// until it execs).
	marker := filepath.Join(t.TempDir(), "marker")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("tail", "-f", marker)
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start tail: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	// The new process's command line can read empty for a moment after
	// Start (CI saw 0 matches once on a loaded machine): look again for
	// up to 2 s; the match must still be that one process.
	pid, err := PID(marker)
	for deadline := time.Now().Add(2 * time.Second); err != nil && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		pid, err = PID(marker)
	}
	if err != nil || pid != cmd.Process.Pid {
		t.Errorf("PID(%q) = %d, %v; want %d", marker, pid, err, cmd.Process.Pid)
	}
	if _, err := PID(marker + "-nobody-" + os.Args[0]); err == nil {
		t.Error("PID of a command line nobody has: no error")
	}
}
