package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// readmeBlocks returns the lines of the README's ```sh blocks.
func readmeBlocks(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks [][]string
	re := regexp.MustCompile("(?s)```sh\n(.*?)```")
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		blocks = append(blocks, strings.Split(strings.TrimSpace(m[1]), "\n"))
	}
	return blocks
}

// TestReadmeCommandsWork runs the README's run command (with the built
// binary in place of `go run`) and then its curl examples exactly as
// written, and checks each answer.
func TestReadmeCommandsWork(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	blocks := readmeBlocks(t)
	if len(blocks) < 2 {
		t.Fatalf("README has %d sh blocks, want the set-up block and the API block", len(blocks))
	}
	setup := blocks[0]
	if len(setup) != 2 || !strings.HasPrefix(setup[1], "go test ./...") {
		t.Fatalf("README set-up block is not exactly (run; test): %q", setup)
	}
	run := strings.TrimSpace(strings.SplitN(setup[0], "#", 2)[0])
	const goRun = "go run ./cmd/tako-cluster"
	if !strings.HasPrefix(run, goRun) {
		t.Fatalf("README run command %q does not start with %q", run, goRun)
	}
	for _, port := range []int{8080, 4700, 4701, 4710, 5701, 5710} {
		ln, err := net.Listen("tcp", fmt.Sprintf("localhost:%d", port))
		if err != nil {
			t.Skipf("port %d is taken on this machine (%v); the README's cluster cannot start here", port, err)
		}
		ln.Close()
	}
	args := append(strings.Fields(strings.TrimPrefix(run, goRun)), "-v", t.TempDir())
	node := start(t, "../..", "tako-cluster", args...)
	// As a user at its terminal: once it says every process is up, not
	// merely once the proxy answers.
	waitClusterUp(t, node, "http://localhost:8080")

	want := []string{
		"HTTP/1.1 200",             // POST
		"HTTP/1.1 200",             // GET
		"HTTP/1.1 200",             // stat
		"HTTP/1.1 409",             // older X-Timestamp
		"HTTP/1.1 204",             // DELETE
		"HTTP/1.1 404",             // GET after DELETE
		"ok",                       // health
		"tako_http_requests_total", // metrics
	}
	curls := blocks[1]
	if len(curls) != len(want) {
		t.Fatalf("README API block has %d commands, the test expects %d: update both together", len(curls), len(want))
	}
	for i, line := range curls {
		out, err := exec.Command("sh", "-c", line).Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", line, err, out)
		}
		if !strings.Contains(string(out), want[i]) {
			t.Errorf("%s:\n%s\nwant it to contain %q", line, out, want[i])
		}
	}
	if err := node.stop(t); err != nil {
		t.Fatalf("tako-cluster exit after SIGTERM: %v", err)
	}
}
