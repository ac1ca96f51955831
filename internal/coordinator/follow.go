package coordinator

import (
	"context"
	"errors"
	"fmt"

	"github.com/takodb/tako/internal/config"
)

// follow long-polls the master coordinator named by the served configuration
// and adopts its configuration and epoch whenever its epoch is higher, until
// ctx is done. While the served configuration names no master, or names this
// coordinator, it waits for another configuration.
func (s *Server) follow(ctx context.Context) {
	var (
		bo       backoff
		down     string // the master that does not answer, "" while it does
		rejected int64  // the highest epoch of the master that did not validate
	)
	for {
		cur := s.cur.Load()
		master, ok := masterAddr(cur.cfg, s.id)
		if !ok {
			select {
			case <-cur.changed:
				continue
			case <-ctx.Done():
				return
			}
		}
		since := max(cur.epoch, rejected)
		ans, err := fetch(ctx, s.client, s.scheme, master, since, s.followWait)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if down != master {
				s.log.Warn("master coordinator does not answer, retrying", "master", master, "err", err)
				down = master
			}
			if !bo.sleep(ctx) {
				return
			}
			continue
		}
		if down != "" {
			s.log.Info("master coordinator answers again", "master", master)
			down = ""
		}
		bo.reset()
		if !ans.modified {
			continue
		}
		if ans.epoch <= since {
			// The master ignored since: pause rather than spin.
			if !bo.sleep(ctx) {
				return
			}
			continue
		}
		if err := s.adopt(master, ans); err != nil {
			if errors.As(err, new(invalidError)) {
				s.log.Error("the master's configuration is invalid, keeping the current one",
					"master", master, "epoch", ans.epoch, "err", err)
				rejected = ans.epoch
				continue
			}
			s.log.Error("could not adopt the master's configuration", "master", master, "epoch", ans.epoch, "err", err)
			if !bo.sleep(ctx) {
				return
			}
		}
	}
}

// invalidError is a configuration from a coordinator that did not validate.
type invalidError struct{ err error }

// Error returns the reason the configuration is invalid.
func (e invalidError) Error() string { return e.err.Error() }

// Unwrap returns the config package's error.
func (e invalidError) Unwrap() error { return e.err }

// adopt serves the master's configuration of ans under its epoch, if that is
// higher than the epoch served, once the epoch state recording it is
// persisted. It returns an invalidError when the configuration does not
// validate.
func (s *Server) adopt(master string, ans answer) error {
	cfg, err := config.Parse(ans.body)
	if err != nil {
		return invalidError{err}
	}
	body, sum, err := canonical(cfg)
	if err != nil {
		return err
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	cur := s.cur.Load()
	if ans.epoch <= cur.epoch {
		return nil
	}
	st := epochState{Epoch: ans.epoch, SHA256: sum, FileSHA256: s.fileSum, Configuration: body}
	if err := writeState(s.stateDir, st); err != nil {
		return fmt.Errorf("coordinator: adopting the configuration of %s: %w", master, err)
	}
	s.publishLocked(cfg, body, sum, ans.epoch)
	s.log.Info("adopted the master's configuration", "master", master, "epoch", ans.epoch, "previous_epoch", cur.epoch)
	return nil
}
