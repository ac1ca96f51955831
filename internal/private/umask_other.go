//go:build !unix

package private

// Umask does nothing on systems without a umask, and returns 0: there,
// new files get what the system's defaults (ACLs on Windows) give, and
// Tighten does what the system's chmod can.
func Umask() (old int) { return 0 }
