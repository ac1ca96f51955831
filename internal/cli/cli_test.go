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

// TestLogFileIsPrivate: -l FILE makes an existing log file, left 0644 by
// an older version, 0600, and a log that is not a regular file (/dev/null)
// is written to and left alone.
func TestLogFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n1.log")
	if err := os.WriteFile(path, []byte("an older line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{path, os.DevNull} {
		logger, closer, err := Logger("tako-node", false, file, false)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		logger.Info("node serving")
		closer.Close()
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("log file is %#o, want 0600", fi.Mode().Perm())
	}
	if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), "an older line\n") || !strings.Contains(string(b), "node serving") {
		t.Errorf("log file lost its lines or got none: %q", b)
	}
	if fi, err := os.Stat(os.DevNull); err != nil || fi.Mode().Perm()&0o066 != 0o066 {
		t.Errorf("%s: %v, mode %v: it must stay writable by everyone", os.DevNull, err, fi.Mode())
	}
}
