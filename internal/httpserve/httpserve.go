// Package httpserve serves an HTTP handler the way every Tako program does
// (node, proxy, coordinator): each connection admitted by a connection
// limiter, TLS outside the limiter when configured, the deployment's
// timeouts for headers, bodies and idle connections, net/http's own
// complaints in the program's log, and a shutdown bounded by a context.
package httpserve

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/connlimit"
)

// Options configure a Server.
type Options struct {
	// Handler serves the requests. Required.
	Handler http.Handler
	// Limits give the timeouts: HeaderTimeout for a request's headers,
	// BodyTimeout for a whole request, IdleTimeout for a keep-alive
	// connection between requests.
	Limits config.Limits
	// Conns admits each connection (its listener sits inside TLS, so a
	// connection over the limit costs no handshake) and tracks its state.
	// Required.
	Conns *connlimit.Limiter
	// TLS, when not nil, serves HTTPS with it; nil serves plain HTTP.
	TLS *tls.Config
	// Logger receives what net/http reports (failed handshakes, broken
	// connections), at Warn. Nil discards it.
	Logger *slog.Logger
}

// Server is an HTTP server on one listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// New returns a server of opts.Handler on ln, which it owns from then on:
// Serve serves it, Shutdown closes it.
func New(ln net.Listener, opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ln = opts.Conns.Listener(ln)
	if opts.TLS != nil {
		ln = tls.NewListener(ln, opts.TLS)
	}
	return &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           opts.Handler,
			ReadHeaderTimeout: opts.Limits.HeaderTimeout,
			ReadTimeout:       opts.Limits.BodyTimeout,
			IdleTimeout:       opts.Limits.IdleTimeout,
			ConnState:         opts.Conns.ConnState,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		},
	}
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Shutdown, then returns http.ErrServerClosed; it
// returns another error when the listener fails.
func (s *Server) Serve() error { return s.srv.Serve(s.ln) }

// Shutdown stops taking connections and waits for the requests in flight
// until ctx ends; then it closes the connections still open and returns
// why (the requests it cut off). It returns nil when every request
// finished.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	return err
}
