package proxy

import (
	"errors"
	"fmt"
	"testing"

	"github.com/takodb/tako/client"
	"github.com/takodb/tako/internal/httpapi"
)

// TestClientErrorsReachTheirHTTPAnswer: each of the client's errors maps to
// the HTTP API's, so that a proxy answers what a node would: 507 for a
// write that needs replicas whose disks are full, 503 for too few
// replicas, 400 for bad input, 404.
func TestClientErrorsReachTheirHTTPAnswer(t *testing.T) {
	for _, tt := range []struct{ from, to error }{
		{client.ErrInsufficientStorage, httpapi.ErrInsufficientStorage},
		{client.ErrUnavailable, httpapi.ErrUnavailable},
		{client.ErrBadRequest, httpapi.ErrBadRequest},
		{client.ErrTooLarge, httpapi.ErrBadRequest},
		{client.ErrNotFound, httpapi.ErrNotFound},
	} {
		got := apiError(fmt.Errorf("node n1: %w", tt.from))
		if !errors.Is(got, tt.to) {
			t.Errorf("%v maps to %v, want %v", tt.from, got, tt.to)
		}
	}
}
