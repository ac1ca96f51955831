package proxy_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/proxy"
)

// TestProxyNeedsAWriteToken: with an auth section, a proxy starts only with
// a token the section lists with the write role at least (it presents it to
// the nodes), and a new configuration that stops listing it is logged as an
// error.
func TestProxyNeedsAWriteToken(t *testing.T) {
	section, tokens, err := auth.NewSection(auth.Read, auth.Write)
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
		{tokens["read"], `has the role read; it needs write`},
	} {
		_, err := proxy.New(proxy.Options{Config: withAuth, Addr: "127.0.0.1:0", Token: tt.token})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("proxy.New with token %q: %v, want an error saying %q", tt.token, err, tt.want)
		}
	}

	var logs bytes.Buffer
	p, err := proxy.New(proxy.Options{Config: withAuth, Addr: "127.0.0.1:0", Token: tokens["write"],
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatalf("proxy.New with the write token: %v", err)
	}
	// The write token's line removed: the proxy says so.
	withoutWrite, err := config.Parse([]byte(strings.Split(section, "    write-token:")[0] + deployment))
	if err != nil {
		t.Fatal(err)
	}
	p.SetConfig(withoutWrite, 2)
	if !strings.Contains(logs.String(), "does not list this proxy's token") {
		t.Errorf("a configuration without the proxy's token was not logged as an error:\n%s", logs.String())
	}
}
