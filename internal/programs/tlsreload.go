package programs

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// ignoreHUPUntilReload makes SIGHUP do nothing until reloadTLSOnHUP takes
// it: it reloads the certificates once they are loaded (with a tls
// section); before, and without one, it must not end the process as it
// would by default (kill -HUP sent to every Tako process of a host).
func ignoreHUPUntilReload() { signal.Ignore(syscall.SIGHUP) }

// reloadTLSOnHUP calls reload on every SIGHUP until ctx is done (it undoes
// an earlier signal.Ignore of SIGHUP), and logs the outcome: the certificate files of the tls section are read again
// without dropping a connection. The returned function stops listening
// and waits for the goroutine it started.
func reloadTLSOnHUP(ctx context.Context, logger *slog.Logger, reload func() error) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if err := reload(); err != nil {
					logger.Error("SIGHUP: reloading the TLS certificate failed; keeping the current one", "err", err)
				} else {
					logger.Info("SIGHUP: reloaded the TLS certificate; new connections use it")
				}
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		cancel()
		<-done
	}
}
