package wire

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// tokenTable is an Authorize for tests: each known token may make the ops
// it lists; OpAuth is allowed for every known token.
type tokenTable struct {
	mu     sync.Mutex
	rights map[string][]Op
}

func (tt *tokenTable) authorize(token string, op Op) *Error {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	ops, ok := tt.rights[token]
	switch {
	case token == "":
		return &Error{Code: CodeUnauthorized, Message: "a token is required"}
	case !ok:
		return &Error{Code: CodeUnauthorized, Message: "unknown token"}
	case op == OpAuth:
		return nil
	}
	for _, o := range ops {
		if o == op {
			return nil
		}
	}
	return &Error{Code: CodeForbidden, Message: "not allowed: " + op.String()}
}

func (tt *tokenTable) revoke(token string) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	delete(tt.rights, token)
}

// TestTokens: a server with Authorize serves a connection's requests by the
// token it presented with OpAuth: none, or an unknown one, gets
// CodeUnauthorized (pings are still answered), a known one gets exactly its
// ops, each request of a batch decided by itself; a revoked token stops
// working on the open connection at once.
func TestTokens(t *testing.T) {
	tokens := &tokenTable{rights: map[string][]Op{
		"reader": {OpGet, OpReplicaGet},
		"writer": {OpGet, OpReplicaGet, OpPut},
	}}
	ts := startServer(t, "", ServerOptions{Handler: &echoHandler{}, Authorize: tokens.authorize})
	ctx := ctxTimeout(t, 10*time.Second)
	get := &Request{Op: OpGet, Key: []byte("k")}
	put := &Request{Op: OpPut, Key: []byte("k"), Record: Record{Timestamp: 1, Value: []byte("v")}}

	anonymous := dial(t, ts.addr)
	if _, err := anonymous.Call(ctx, get); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("a Get without a token: %v, want unauthorized", err)
	}
	if resp, err := anonymous.Call(ctx, &Request{Op: OpPing}); err != nil || resp.Op != OpPong {
		t.Errorf("a Ping without a token: %v %v, want a pong", resp, err)
	}

	_, err := Dial(ctx, ts.addr, DialOptions{Token: "stolen"})
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "unknown token") {
		t.Errorf("dialling with an unknown token: %v, want unauthorized: unknown token", err)
	}
	if !strings.Contains(ts.logs.String(), "refused a token") {
		t.Errorf("the server did not log the refused token:\n%s", ts.logs)
	}

	reader, err := Dial(ctx, ts.addr, DialOptions{Token: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if resp, err := reader.Call(ctx, get); err != nil || !resp.Found {
		t.Errorf("a Get with the reader token: %v %v", resp, err)
	}
	if _, err := reader.Call(ctx, put); !errors.Is(err, ErrForbidden) {
		t.Errorf("a Put with the reader token: %v, want forbidden", err)
	}
	resp, err := reader.Call(ctx, &Request{Op: OpBatch, Batch: []Request{*get, *put}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Batch[0].Err != nil || !errors.Is(resp.Batch[1].Err, ErrForbidden) {
		t.Errorf("a batch of a Get and a Put with the reader token: %v, %v; want a record, then forbidden", resp.Batch[0], resp.Batch[1].Err)
	}
	if _, err := reader.Call(ctx, &Request{Op: OpBatch, Batch: []Request{{Op: OpAuth, Key: []byte("writer")}}}); !errors.Is(err, ErrBadRequest) {
		t.Errorf("an Auth in a batch: %v, want refused before sending", err)
	}

	// Presenting another token on the same connection changes its rights;
	// an unknown one leaves them as they were.
	if _, err := reader.Call(ctx, &Request{Op: OpAuth, Key: []byte("nobody")}); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("an unknown token on an open connection: %v", err)
	}
	if _, err := reader.Call(ctx, get); err != nil {
		t.Errorf("a Get after an unknown token was refused: %v, want the reader's rights kept", err)
	}
	if _, err := reader.Call(ctx, &Request{Op: OpAuth, Key: []byte("writer")}); err != nil {
		t.Fatal(err)
	}
	if _, err := reader.Call(ctx, put); err != nil {
		t.Errorf("a Put after presenting the writer token: %v", err)
	}

	tokens.revoke("writer")
	if _, err := reader.Call(ctx, get); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("a Get after the token was revoked: %v, want unauthorized", err)
	}
	// Refused: the anonymous Get, the unknown token at the dial, the Put,
	// the batch's Put, the unknown token on the open connection, the Get
	// after the revocation.
	if got := ts.srv.Stats().Refused; got != 6 {
		t.Errorf("Stats().Refused = %d, want 6", got)
	}
}

// TestTokenWithoutAuthorize: a server without Authorize serves everyone,
// and accepts a token it does not check; a server that predates OpAuth
// (answering CodeUnknownOp) is dialled as if no token were given.
func TestTokenWithoutAuthorize(t *testing.T) {
	ctx := ctxTimeout(t, 10*time.Second)
	open := startServer(t, "", ServerOptions{Handler: &echoHandler{}})
	c, err := Dial(ctx, open.addr, DialOptions{Token: "anything"})
	if err != nil {
		t.Fatalf("dialling a server without Authorize with a token: %v", err)
	}
	defer c.Close()
	if _, err := c.Call(ctx, &Request{Op: OpPut, Key: []byte("k")}); err != nil {
		t.Errorf("a Put: %v", err)
	}

	older := startServer(t, "", ServerOptions{Handler: &echoHandler{}, Authorize: func(_ string, op Op) *Error {
		if op == OpAuth {
			return &Error{Code: CodeUnknownOp, Message: "op 0x09 is not a request of protocol version 1"}
		}
		return nil
	}})
	c2, err := Dial(ctx, older.addr, DialOptions{Token: "anything"})
	if err != nil {
		t.Fatalf("dialling a server that does not know OpAuth: %v", err)
	}
	defer c2.Close()
	if _, err := c2.Call(ctx, &Request{Op: OpGet, Key: []byte("k")}); err != nil {
		t.Errorf("a Get: %v", err)
	}

	if _, err := Dial(context.Background(), open.addr, DialOptions{Token: strings.Repeat("t", MaxKeySize+1)}); err == nil {
		t.Error("a token longer than MaxKeySize was accepted")
	}
}
