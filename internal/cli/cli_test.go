package cli

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoggerFormats: -json writes one JSON object per line, text is the
// default, -d adds debug lines, and every line names the program.
func TestLoggerFormats(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name        string
		flags       LogFlags
		wantJSON    bool
		wantDebug   bool
		wantProgram string
	}{
		{"text", LogFlags{}, false, false, "program=tako-node"},
		{"json", LogFlags{JSON: true}, true, false, `"program":"tako-node"`},
		{"debug", LogFlags{Debug: true}, false, true, "program=tako-node"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.flags.File = filepath.Join(dir, tt.name+".log")
			logger, closer, err := tt.flags.Logger("tako-node")
			if err != nil {
				t.Fatal(err)
			}
			logger.Info("node serving", "http", "127.0.0.1:5711")
			logger.Debug("a detail")
			closer.Close()
			out, err := os.ReadFile(tt.flags.File)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if want := map[bool]int{false: 1, true: 2}[tt.wantDebug]; len(lines) != want {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), want, out)
			}
			for _, line := range lines {
				var v map[string]any
				isJSON := json.Unmarshal([]byte(line), &v) == nil
				if isJSON != tt.wantJSON {
					t.Errorf("line %q: JSON %v, want %v", line, isJSON, tt.wantJSON)
				}
				if !strings.Contains(line, tt.wantProgram) {
					t.Errorf("line %q does not name the program", line)
				}
			}
		})
	}
}

// TestTokenFlag: -token-file reads the first line of the file, trimmed; an
// empty file, or a missing one, is an error that names it; without the
// flag, $TAKO_TOKEN.
func TestTokenFlag(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	t.Setenv(TokenEnv, " from-env \n")
	for _, tt := range []struct {
		args      []string
		want, err string
	}{
		{nil, "from-env", ""},
		{[]string{"-token-file", write("ok", "tako_abc \nignored\n")}, "tako_abc", ""},
		{[]string{"-token-file", write("empty", "\n\n")}, "", "holds no token"},
		{[]string{"-token-file", filepath.Join(dir, "missing")}, "", "reading the token"},
	} {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		read := TokenFlag(fs, "the token")
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		got, err := read()
		if got != tt.want || (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("%v: %q, %v; want %q and an error containing %q", tt.args, got, err, tt.want, tt.err)
		}
	}
}
