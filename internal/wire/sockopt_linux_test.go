package wire

import (
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// TestDialedConnectionsDetectDeadPeers checks the socket options that make
// a connection to a vanished host break within seconds: the user timeout
// and the keep-alive probes.
func TestDialedConnectionsDetectDeadPeers(t *testing.T) {
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	c := dial(t, ts.addr)
	raw, err := c.nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var userTimeout, keepAlive, idle int
	var gerr error
	err = raw.Control(func(fd uintptr) {
		if userTimeout, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT); gerr != nil {
			return
		}
		if keepAlive, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE); gerr != nil {
			return
		}
		idle, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)
	})
	if err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if userTimeout != int(deadPeerTimeout.Milliseconds()) || keepAlive != 1 || idle != 5 {
		t.Errorf("TCP_USER_TIMEOUT %d ms, SO_KEEPALIVE %d, TCP_KEEPIDLE %d s; want %d, 1, 5", userTimeout, keepAlive, idle, deadPeerTimeout.Milliseconds())
	}
}
