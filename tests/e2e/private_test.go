package e2e

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// privateSetup runs some Tako programs under umask 000, with their var
// directory in VAR and, when they take -l, their logs in LOGS. start returns
// the proxy's base URL and a function that stops them all with SIGTERM.
type privateSetup struct {
	name string
	// start starts the programs in dir with the configuration cfg, which
	// privateConfig wrote; the var directory is dir/var.
	start func(t *testing.T, dir, cfg, coord, node string) (base string, stop func())
	// want are patterns of files, relative to dir, that must exist after a run:
	// so that the check sees Pebble's files, the configuration caches,
	// the epoch state and the logs, not an empty directory.
	want []string
}

// privateConfig writes a configuration with coordinator c1 and node n1 in
// dir and returns its path, c1's address and n1's HTTP base URL.
func privateConfig(t *testing.T, dir string) (cfg, coord, node string) {
	t.Helper()
	p := freePorts(t, 3)
	cfg = writeFile(t, dir, "tako.yaml", fmt.Sprintf(`coordinators:
  c1: [127.0.0.1, %d]
active_deployment: main
deployments:
  main:
    hash:
      buckets_per_key: 1
    buckets:
      b1:
        n1: [127.0.0.1, %d, %d]
`, p[0], p[1], p[2]))
	return cfg, fmt.Sprintf("127.0.0.1:%d", p[0]), fmt.Sprintf("http://127.0.0.1:%d", p[1])
}

// TestFilesArePrivate starts a coordinator, a node and a proxy, and then
// tako-cluster, under umask 000, writes a value, and checks that every
// directory under their var directory is 0700 and every file 0600 (Pebble's
// files, the configuration caches, the epoch state), and so are the log
// files of -l, while they run and after they stop. Then it loosens
// everything as an older version left it (directories 0755, files 0644),
// starts the programs again, and checks that they tightened it all and
// still read the value.
func TestFilesArePrivate(t *testing.T) {
	setups := []privateSetup{
		{
			name: "coordinator, node and proxy",
			start: func(t *testing.T, dir, cfg, coord, node string) (string, func()) {
				varDir, logs := filepath.Join(dir, "var"), filepath.Join(dir, "logs")
				c1 := startWithUmask(t, dir, "000", "tako-coordinator", "-id", "c1", "-cfg", cfg, "-v", varDir, "-l", filepath.Join(logs, "c1.log"))
				waitHealthy(t, c1, "http://"+coord)
				n1 := startWithUmask(t, dir, "000", "tako-node", "-id", "n1", "-c", coord, "-v", varDir, "-l", filepath.Join(logs, "n1.log"))
				waitHealthy(t, n1, node)
				port := freePorts(t, 1)[0]
				p1 := startWithUmask(t, dir, "000", "tako-proxy", "-p", fmt.Sprint(port), "-b", "127.0.0.1", "-c", coord, "-v", varDir, "-l", filepath.Join(logs, "p1.log"))
				base := fmt.Sprintf("http://127.0.0.1:%d", port)
				waitHealthy(t, p1, base)
				return base, func() {
					for _, p := range []*process{p1, n1, c1} {
						if err := p.stop(t); err != nil {
							t.Errorf("%s: exit after SIGTERM: %v\n%s", p.name, err, p.output())
						}
					}
				}
			},
			want: []string{"var/etc/n1/configuration.json", "var/etc/p1/configuration.json", "var/coordinator/c1/epoch.json",
				"var/data/n1/MANIFEST-*", "var/data/n1/OPTIONS-*", "var/data/n1/*.log", "logs/c1.log", "logs/n1.log", "logs/p1.log"},
		},
		{
			name: "tako-cluster",
			start: func(t *testing.T, dir, cfg, _, node string) (string, func()) {
				port := freePorts(t, 1)[0]
				tc := startWithUmask(t, dir, "000", "tako-cluster", cfg, "-p", fmt.Sprint(port), "-v", filepath.Join(dir, "var"))
				base := fmt.Sprintf("http://localhost:%d", port)
				waitHealthy(t, tc, base)
				waitHealthy(t, tc, node)
				for deadline := time.Now().Add(20 * time.Second); !strings.Contains(tc.output(), "Ctrl-C stops the cluster"); time.Sleep(50 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatalf("tako-cluster: no status table after 20 s:\n%s", tc.output())
					}
				}
				return base, func() {
					if err := tc.stop(t); err != nil {
						t.Errorf("tako-cluster: exit after SIGTERM: %v\n%s", err, tc.output())
					}
				}
			},
			want: []string{"var/etc/n1/configuration.json", "var/etc/p1/configuration.json", "var/coordinator/c1/epoch.json",
				"var/data/n1/MANIFEST-*", "var/data/n1/OPTIONS-*", "var/data/n1/*.log", "var/log/c1.log", "var/log/n1.log", "var/log/p1.log"},
		},
	}
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, d := range []string{"conf", "logs"} { // the test's, open to all: the programs must not rely on them
				if err := os.Mkdir(filepath.Join(dir, d), 0o777); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(filepath.Join(dir, d), 0o777); err != nil {
					t.Fatal(err)
				}
			}
			cfg, coord, node := privateConfig(t, filepath.Join(dir, "conf"))
			ctx := context.Background()

			base, stop := s.start(t, dir, cfg, coord, node)
			if code, _, body, err := httpDo(ctx, "POST", base+"/values/secret", []byte("only for me"), nil); err != nil || code != 200 {
				t.Fatalf("POST: %d %v %s", code, err, body)
			}
			checkPrivate(t, dir, s.want, "while running")
			stop()
			checkPrivate(t, dir, s.want, "after a clean stop")

			// What an older version, under umask 022, left behind.
			loosened := loosen(t, dir)
			if loosened == 0 {
				t.Fatal("nothing to loosen")
			}
			base, stop = s.start(t, dir, cfg, coord, node)
			if code, _, body, err := httpDo(ctx, "GET", base+"/values/secret", nil, nil); err != nil || code != 200 || string(body) != "only for me" {
				t.Fatalf("GET after the restart: %d %v %q", code, err, body)
			}
			checkPrivate(t, dir, s.want, fmt.Sprintf("after a restart over %d files and directories left 0755/0644", loosened))
			stop()
		})
	}
}

// checkPrivate fails the test unless every directory under dir/var is 0700
// and every file under it, and every log file in dir/logs, is 0600, and
// every pattern of want names a file.
func checkPrivate(t *testing.T, dir string, want []string, when string) {
	t.Helper()
	for _, w := range want {
		if m, _ := filepath.Glob(filepath.Join(dir, w)); len(m) == 0 {
			t.Errorf("%s: no file %s", when, w)
		}
	}
	var bad []string
	seen := 0
	check := func(path string, fi fs.FileInfo) {
		seen++
		rel, _ := filepath.Rel(dir, path)
		switch {
		case fi.IsDir() && fi.Mode().Perm() != 0o700:
			bad = append(bad, fmt.Sprintf("directory %s is %#o, want 0700", rel, fi.Mode().Perm()))
		case fi.Mode().IsRegular() && fi.Mode().Perm() != 0o600:
			bad = append(bad, fmt.Sprintf("file %s is %#o, want 0600", rel, fi.Mode().Perm()))
		case !fi.IsDir() && !fi.Mode().IsRegular():
			bad = append(bad, fmt.Sprintf("%s is a %v, want a directory or a file", rel, fi.Mode().Type()))
		}
	}
	err := filepath.WalkDir(filepath.Join(dir, "var"), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		check(path, fi)
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*"))
	for _, l := range logs {
		fi, err := os.Lstat(l)
		if err != nil {
			t.Fatal(err)
		}
		check(l, fi)
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("%s, %d of %d paths are open to other users:\n%s", when, len(bad), seen, strings.Join(bad, "\n"))
	} else {
		t.Logf("%s: %d directories and files, all private", when, seen)
	}
}

// loosen sets every directory under dir/var to 0755 and every file under
// it and in dir/logs to 0644, as a version before this one (under umask 022)
// left them, and returns how many it changed.
func loosen(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	set := func(path string, mode fs.FileMode) {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		n++
	}
	err := filepath.WalkDir(filepath.Join(dir, "var"), func(path string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir():
			set(path, 0o755)
		case d.Type().IsRegular():
			set(path, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, "logs", "*.log"))
	for _, l := range logs {
		set(l, 0o644)
	}
	return n
}
