package node

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/wire"
)

// TestNodeNeedsAnAdminToken: with an auth section, a node starts only with
// a token the section lists as admin (it presents it to its peers); a new
// configuration that stops listing it is logged as an error; and its binary
// port decides each op by the role of the connection's token.
func TestNodeNeedsAnAdminToken(t *testing.T) {
	section, tokens, err := auth.NewSection(auth.Read, auth.Write, auth.Admin)
	if err != nil {
		t.Fatal(err)
	}
	const deployment = "active_deployment: d\ndeployments:\n  d:\n    buckets:\n      b1:\n        n1: [127.0.0.1, 5711, 4711]\n"
	withAuth, err := config.Parse([]byte(section + deployment))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ token, want string }{
		{"", "no token was given"},
		{"tako_unknown", "not one the configuration's auth section lists"},
		{tokens["write"], `has the role write; it needs admin`},
	} {
		n, err := New(Options{ID: "n1", Config: withAuth, DataDir: t.TempDir(), Token: tt.token})
		if err == nil {
			n.Close()
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New with token %q: %v, want an error saying %q", tt.token, err, tt.want)
		}
	}

	// The store's background work logs too (its ballast file): the
	// buffer is read while it may be written.
	var logs lockedBuffer
	n, err := New(Options{ID: "n1", Config: withAuth, DataDir: t.TempDir(), Token: tokens["admin"],
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("New with the admin token: %v", err)
	}
	defer n.Close()

	for _, tt := range []struct {
		token string
		op    wire.Op
		want  wire.ErrorCode // 0: served
	}{
		{"", wire.OpGet, wire.CodeUnauthorized},
		{"tako_unknown", wire.OpAuth, wire.CodeUnauthorized},
		{tokens["read"], wire.OpAuth, 0},
		{tokens["read"], wire.OpGet, 0},
		{tokens["read"], wire.OpReplicaGet, 0},
		{tokens["read"], wire.OpPut, wire.CodeForbidden},
		{tokens["write"], wire.OpPut, 0},
		{tokens["write"], wire.OpReplicaPut, wire.CodeForbidden},
		{tokens["write"], wire.OpFencedPut, 0},
		{tokens["read"], wire.OpFencedPut, wire.CodeForbidden},
		{tokens["read"], wire.OpFencedGet, 0},
		{tokens["write"], wire.OpRangeStream, wire.CodeForbidden},
		{tokens["write"], wire.OpDigest, wire.CodeForbidden},
		{tokens["write"], wire.OpRangeSummary, wire.CodeForbidden},
		{tokens["admin"], wire.OpReplicaPut, 0},
		{tokens["admin"], wire.OpRangeSummary, 0},
	} {
		var got wire.ErrorCode
		if e := n.authorizeWire(tt.token, tt.op); e != nil {
			got = e.Code
		}
		if got != tt.want {
			t.Errorf("%v with a %q token: code %v, want %v", tt.op, tt.token[:min(len(tt.token), 12)], got, tt.want)
		}
	}

	// The admin token's line removed: the node says so.
	withoutAdmin, err := config.Parse([]byte(strings.Split(section, "    admin-token:")[0] + deployment))
	if err != nil {
		t.Fatal(err)
	}
	n.SetConfig(withoutAdmin, 2)
	if !strings.Contains(logs.String(), "does not list this node's token as an admin token") {
		t.Errorf("a configuration without the node's token was not logged as an error:\n%s", logs.String())
	}
}

// lockedBuffer is a bytes.Buffer that may be written and read at once.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
