//go:build unix

package private

import "syscall"

// Umask sets the process's umask to Mask, so that the directories and files
// it creates from now on get no permission for group and others, and
// returns the umask it replaced. It is process state: programs call it
// once, at start, before they create a file.
func Umask() (old int) {
	return syscall.Umask(Mask)
}
