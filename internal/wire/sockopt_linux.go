package wire

import (
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// setUserTimeout makes the kernel abort the connection when data it sent
// stays unacknowledged for d (TCP_USER_TIMEOUT): a peer whose host is gone
// or cut off then breaks the connection within d, instead of after the
// default retransmission limit of about 15 minutes, and the pool dials
// anew. A frozen process is not affected: its kernel still acknowledges.
func setUserTimeout(c syscall.RawConn, d time.Duration) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d.Milliseconds()))
	})
	if err != nil {
		return err
	}
	return serr
}
