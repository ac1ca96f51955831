package node

import (
	"github.com/takodb/tako/internal/auth"
	"github.com/takodb/tako/internal/wire"
)

// wireRole is the role a token needs for a request of op on the binary
// port: reading a key, through the node (Get) or from its store alone
// (ReplicaGet, what `tako where` asks), needs read; writing a key through
// the node needs write; the operations between nodes (ReplicaPut, which
// writes one replica past the quorum and any timestamp check, and the
// anti-entropy Digest and RangeSummary) need admin, as do ops this version
// does not know. Presenting a token (Auth) needs only that it is listed.
func wireRole(op wire.Op) auth.Role {
	switch op {
	case wire.OpAuth, wire.OpGet, wire.OpReplicaGet:
		return auth.Read
	case wire.OpPut:
		return auth.Write
	}
	return auth.Admin
}

// authorizeWire is the binary port's wire.ServerOptions.Authorize: without
// an auth section every request is served; with one, a connection must
// have presented a listed token (OpAuth) of the role the op needs. It
// reads the configuration at each request, so a token removed from the
// configuration stops working at once, on open connections too.
func (n *Node) authorizeWire(token string, op wire.Op) *wire.Error {
	tokens := n.cfg.Load().Auth
	if tokens == nil {
		return nil
	}
	if token == "" {
		return &wire.Error{Code: wire.CodeUnauthorized, Message: "this cluster has an auth section: present a token (client.Options.Token or $TAKO_TOKEN; -token-file for nodes and proxies)"}
	}
	tok, ok := tokens.Lookup(token)
	if !ok {
		return &wire.Error{Code: wire.CodeUnauthorized, Message: "unknown token"}
	}
	if need := wireRole(op); tok.Role < need {
		return &wire.Error{Code: wire.CodeForbidden, Message: "token " + quote(tok.Name) + " has the role " + tok.Role.String() + "; " + op.String() + " needs " + need.String()}
	}
	return nil
}

func quote(s string) string { return `"` + s + `"` }
