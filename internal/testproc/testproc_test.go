package testproc

import (
	"os"
	"os/exec"
	"testing"
)

// TestPID finds a child by a unique argument, and refuses a match that no
// process has.
func TestPID(t *testing.T) {
	marker := t.TempDir()
	cmd := exec.Command("sh", "-c", "sleep 30", marker) // marker is $0, in the command line
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start sh: %v", err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid, err := PID(marker)
	if err != nil || pid != cmd.Process.Pid {
		t.Errorf("PID(%q) = %d, %v; want %d", marker, pid, err, cmd.Process.Pid)
	}
	if _, err := PID(marker + "-nobody-" + os.Args[0]); err == nil {
		t.Error("PID of a command line nobody has: no error")
	}
}
