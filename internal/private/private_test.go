//go:build unix

package private

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// mkfile creates path with perm, whatever the umask.
func mkfile(t *testing.T, path string, perm fs.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// mkdir creates path with perm, whatever the umask.
func mkdir(t *testing.T, path string, perm fs.FileMode) {
	t.Helper()
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// perm returns the permission bits of path, not following a link.
func perm(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// TestTightenTree: every directory and file under the root loses its group
// and other bits and keeps its owner's; a link under the root is not
// followed (what it names, outside, keeps its mode); a fifo is left alone;
// a root that is a link to a directory is walked; a missing root is no
// error.
func TestTightenTree(t *testing.T) {
	base := t.TempDir()
	outside := filepath.Join(base, "outside")
	mkfile(t, outside, 0o644)
	disk := filepath.Join(base, "disk")
	mkdir(t, disk, 0o755)
	root := filepath.Join(base, "store")
	if err := os.Symlink(disk, root); err != nil {
		t.Fatal(err)
	}
	mkdir(t, filepath.Join(disk, "sub"), 0o775)
	mkdir(t, filepath.Join(disk, "sub", "deeper"), 0o777)
	mkfile(t, filepath.Join(disk, "000001.sst"), 0o644)
	mkfile(t, filepath.Join(disk, "sub", "MANIFEST"), 0o666)
	mkfile(t, filepath.Join(disk, "sub", "deeper", "LOCK"), 0o400)
	mkfile(t, filepath.Join(disk, "run.sh"), 0o755)
	if err := os.Symlink(outside, filepath.Join(disk, "link")); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(disk, "fifo")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(fifo, 0o666); err != nil {
		t.Fatal(err)
	}

	if err := TightenTree(root); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		path string
		want fs.FileMode
	}{
		{disk, 0o700},
		{filepath.Join(disk, "sub"), 0o700},
		{filepath.Join(disk, "sub", "deeper"), 0o700},
		{filepath.Join(disk, "000001.sst"), 0o600},
		{filepath.Join(disk, "sub", "MANIFEST"), 0o600},
		{filepath.Join(disk, "sub", "deeper", "LOCK"), 0o400},
		{filepath.Join(disk, "run.sh"), 0o700},
		{outside, 0o644},
		{fifo, 0o666},
	} {
		if got := perm(t, tt.path); got != tt.want {
			t.Errorf("%s: %#o, want %#o", tt.path, got, tt.want)
		}
	}
	if err := TightenTree(filepath.Join(base, "missing")); err != nil {
		t.Errorf("missing root: %v", err)
	}
}

// TestTighten: each path loses its group and other bits without its
// content being touched; missing paths are skipped.
func TestTighten(t *testing.T) {
	base := t.TempDir()
	varDir := filepath.Join(base, "var")
	mkdir(t, varDir, 0o755)
	mkdir(t, filepath.Join(varDir, "etc"), 0o750)
	mkfile(t, filepath.Join(varDir, "etc", "other.yaml"), 0o644)
	log := filepath.Join(base, "n1.log")
	mkfile(t, log, 0o644)
	if err := Tighten(varDir, filepath.Join(varDir, "etc"), filepath.Join(varDir, "data"), log); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]fs.FileMode{
		varDir:                       0o700,
		filepath.Join(varDir, "etc"): 0o700,
		filepath.Join(varDir, "etc", "other.yaml"): 0o644, // not descended into
		log: 0o600,
	} {
		if got := perm(t, path); got != want {
			t.Errorf("%s: %#o, want %#o", path, got, want)
		}
	}
}

// TestUmask: after Umask, a file and a directory created with every
// permission get their owner's only.
func TestUmask(t *testing.T) {
	old := Umask()
	defer syscall.Umask(old)
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := perm(t, filepath.Join(dir, "d")); got != 0o700 {
		t.Errorf("new directory: %#o, want 0700", got)
	}
	if got := perm(t, filepath.Join(dir, "f")); got != 0o600 {
		t.Errorf("new file: %#o, want 0600", got)
	}
}

// TestSharedDirectoriesAreLeftAlone: a sticky directory (as /tmp) is
// refused with ErrShared and keeps its mode, and a tree whose root is one is
// not walked; the root directory and one directly under it are shared too
// (checked without a chmod, since the test may run as root), a deeper one
// is not.
func TestSharedDirectoriesAreLeftAlone(t *testing.T) {
	sticky := filepath.Join(t.TempDir(), "tmp")
	mkdir(t, sticky, 0o777|fs.ModeSticky)
	inside := filepath.Join(sticky, "f")
	mkfile(t, inside, 0o644)
	for name, err := range map[string]error{"Tighten": Tighten(sticky), "TightenTree": TightenTree(sticky)} {
		if !errors.Is(err, ErrShared) {
			t.Errorf("%s of a sticky directory: %v, want ErrShared", name, err)
		}
	}
	fi, err := os.Stat(sticky)
	if err != nil || fi.Mode()&(fs.ModePerm|fs.ModeSticky) != 0o777|fs.ModeSticky {
		t.Errorf("sticky directory: %v %v, want drwxrwxrwt", fi.Mode(), err)
	}
	if got := perm(t, inside); got != 0o644 {
		t.Errorf("file in the sticky directory: %#o, want 0644 (not walked)", got)
	}
	for _, tt := range []struct {
		path   string
		shared bool
	}{
		{"/", true},
		{"/var", true},
		{"/var/", true},
		{"/var/lib", false},
		{"/var/lib/tako", false},
		{"var/tako", false},
	} {
		err := checkShared(tt.path, fs.ModeDir|0o755)
		if errors.Is(err, ErrShared) != tt.shared {
			t.Errorf("checkShared(%q) = %v, want shared %v", tt.path, err, tt.shared)
		}
	}
	if err := checkShared("/var", 0o644); err != nil {
		t.Errorf("checkShared of a file directly under /: %v, want nil (only directories are shared)", err)
	}
}
