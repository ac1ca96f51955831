//go:build !linux

package wire

import (
	"syscall"
	"time"
)

// setUserTimeout does nothing where TCP_USER_TIMEOUT does not exist; the
// keep-alive probes still find a dead peer of an idle connection.
func setUserTimeout(syscall.RawConn, time.Duration) error { return nil }
