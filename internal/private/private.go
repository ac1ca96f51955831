// Package private keeps what a Tako process writes to disk readable by its
// own user only: values, the configuration cache (which lists every host and
// the token hashes), epochs, logs.
//
// A program calls Umask first thing, so that every directory and file it or
// a library it uses (Pebble) creates from then on gets no permission for
// group and others, whatever umask it was started with; then Tighten on the
// directories it shares with other processes and TightenTree on the ones
// it owns, to take those permissions away from what an older version, or
// an older umask, left behind.
//
// Tightening removes the group and other bits (mode &^ 0077) and keeps the
// owner's: a directory 0755 becomes 0700, a file 0644 becomes 0600, a file
// 0400 stays 0400. Only directories and regular files are changed; symbolic
// links inside a tree are not followed, and devices, sockets and pipes (a
// log file /dev/null) are left alone. A directory that is shared by design
// is refused with ErrShared rather than changed: the root directory, one
// directly under it (/var, /home) and one with the sticky bit (/tmp,
// /var/tmp). Given as a var directory or a store, such a directory is a
// mistake, which chmod must not make worse for the other users.
package private

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Mask is the umask Umask sets: no permission for group and others.
const Mask = 0o077

// ErrShared is returned (wrapped, with the path) by Tighten and TightenTree
// for a directory that others share by design, which they leave as it is.
var ErrShared = errors.New("private: a directory shared by design (the root, one directly under it, or a sticky one): left as it is")

// Tighten removes the group and other permissions of each path that is a
// directory or a regular file, following a symbolic link that names one. It
// does not descend into directories. A path that does not exist is skipped;
// the error joins the failures, each naming its path.
func Tighten(paths ...string) error {
	var errs []error
	for _, p := range paths {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil {
			err = checkShared(p, fi.Mode())
		}
		if err == nil {
			err = tighten(p, fi.Mode())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("private: %w", err))
		}
	}
	return errors.Join(errs...)
}

// TightenTree removes the group and other permissions of root and of every
// directory and regular file under it. root may be a symbolic link to a
// directory (a store on another disk); links under it are not followed. A
// root that does not exist is skipped; the error joins the failures, each
// naming its path, and the walk goes on past them.
func TightenTree(root string) error {
	dir, err := filepath.EvalSymlinks(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("private: %w", err)
	}
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("private: %w", err)
	} else if err := checkShared(dir, fi.Mode()); err != nil {
		return fmt.Errorf("private: %w", err)
	}
	var errs []error
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) { // gone while we walked: nothing to keep private
				errs = append(errs, err)
			}
			return nil
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		fi, err := d.Info()
		if err == nil {
			err = tighten(path, fi.Mode())
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	for i, e := range errs {
		errs[i] = fmt.Errorf("private: %w", e)
	}
	return errors.Join(errs...)
}

// checkShared returns an error wrapping ErrShared when path, whose mode is
// mode, is a directory that others share by design.
func checkShared(path string, mode fs.FileMode) error {
	if !mode.IsDir() {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	if mode&fs.ModeSticky != 0 || filepath.Dir(abs) == abs || filepath.Dir(filepath.Dir(abs)) == filepath.Dir(abs) {
		return fmt.Errorf("%s: %w", path, ErrShared)
	}
	return nil
}

// tighten removes the group and other bits of path, whose mode is mode,
// when it is a directory or a regular file that has any.
func tighten(path string, mode fs.FileMode) error {
	if !mode.IsDir() && !mode.IsRegular() {
		return nil
	}
	if mode.Perm()&Mask == 0 {
		return nil
	}
	keep := mode & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	return os.Chmod(path, keep&^Mask)
}
