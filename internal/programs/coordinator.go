package programs

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/takodb/tako/internal/cli"
	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coordinator"
	"github.com/takodb/tako/internal/private"
)

// Coordinator is the tako-coordinator program: it serves a configuration
// file to the cluster's nodes and proxies, reloads it on SIGHUP or SIGUSR1,
// and exits the process when stopped.
func Coordinator(args []string) {
	const program = "tako-coordinator"
	private.Umask() // before anything is written: the epoch state, the log
	fs := flag.NewFlagSet(program, flag.ContinueOnError)
	id := fs.String("id", "c1", "the coordinator's `ID` in the configuration's coordinators")
	cfgFile := fs.String("cfg", "", "configuration `FILE` to serve (required)")
	varDir := fs.String("v", "var/tako", "var `DIR`ectory: the epoch state (DIR/coordinator/ID), private to this user")
	var logs cli.LogFlags
	logs.Register(fs)
	readToken := cli.TokenFlag(fs, "`FILE` holding the token to ask the master coordinator (admin) and the nodes' /metrics with, when the cluster has an auth section")
	check := fs.String("check", "", "print what changing the -cfg FILE into `NEW.yaml` would move, and exit (1 if some keys would lose every current replica)")
	cli.Usage(fs, "tako-coordinator -cfg FILE [-id ID] [-v DIR] [-d] [-l FILE] [-json]\n       tako-coordinator -cfg FILE -check NEW.yaml", `
Serves the configuration FILE to every node and proxy of the cluster, over
HTTP on the address the file's coordinators list gives ID:
  GET /configuration             the configuration as JSON, epoch in X-Timestamp
  GET /configuration?since=EPOCH&wait=30s   waits for a newer one (long-poll)
  GET /status                    the cluster: every node's state, keys, repair (JSON)
  GET /                          the same as a page that refreshes itself
  GET /migration                 how far a migration has converged
  GET /health, GET /metrics
Edit the file and send SIGHUP (or SIGUSR1) to reload it: an invalid file is
logged with the reason and the last good configuration keeps being served.
With a tls section, SIGHUP also reads the certificate and key files again
(new connections use them; a bad file is refused and logged). A
coordinator that is not the master_coordinator follows the master's
configuration, so editing the master's file is enough.

A reload after which some keys would keep fewer of their current replicas
than the new write quorum needs (a bucket dropped, nodes renamed, with no
target_deployment) is refused: make it a migration instead, the new layout as
target_deployment, promoted once repair has filled it. While a migration is
under way (the file has a target_deployment), a reload that promotes the
target or drops nodes is refused until every node reports a clean repair pass
under the served configuration (GET /migration shows how far they are).
Create DIR/coordinator/ID/force-next-reload to force one refused reload.
-check prints, without changing anything, which share of the key space a new
file moves, which nodes join and leave, and whether any key would lose all of
its current replicas.

What the coordinator writes is readable by its own user only (umask 0077;
at start, DIR, DIR/coordinator and everything under DIR/coordinator/ID lose
their group and other permissions).

Examples:
  tako-coordinator -id c1 -cfg examples/local_cluster.yaml
  kill -HUP $(pidof tako-coordinator)   # after editing the file
  tako-coordinator -cfg tako.yaml -check new.yaml`)
	cli.Parse(fs, args)
	if *cfgFile == "" {
		cli.Exit(program, 2, errors.New("-cfg FILE is required (see tako-coordinator -h)"))
	}
	if *check != "" {
		cur, err := config.Load(*cfgFile)
		if err != nil {
			cli.Exit(program, 1, err)
		}
		next, err := config.Load(*check)
		if err != nil {
			cli.Exit(program, 1, err)
		}
		plan := coordinator.Plan(cur, next)
		fmt.Printf("from %s to %s:\n%s", *cfgFile, *check, plan)
		if plan.LosesAll > 0 {
			os.Exit(1)
		}
		os.Exit(0)
	}
	logger, closeLog, err := logs.Logger(program)
	if err != nil {
		cli.Exit(program, 1, err)
	}
	defer closeLog.Close()
	stateDir := filepath.Join(*varDir, "coordinator", *id)
	tightenFiles(logger, []string{*varDir, filepath.Join(*varDir, "coordinator")}, stateDir)
	token, err := readToken()
	if err != nil {
		cli.Exit(program, 1, err)
	}
	srv, err := coordinator.NewServer(coordinator.ServerOptions{
		ID: *id, ConfigPath: *cfgFile, StateDir: stateDir, Logger: logger, Token: token,
	})
	if err != nil {
		cli.Exit(program, 1, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	reload := make(chan os.Signal, 1)
	signal.Notify(reload, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(reload)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case sig := <-reload:
				logger.Info("reloading the configuration", "signal", sig.String(), "file", *cfgFile)
				srv.Reload() // logs why when the file is invalid
				if sig == syscall.SIGHUP {
					reloadCoordinatorTLS(logger, srv)
				}
			}
		}
	}()
	if err := srv.Run(ctx); err != nil {
		cli.Exit(program, 1, err)
	}
	os.Exit(0)
}

// reloadCoordinatorTLS reads the coordinator's certificate files again, when
// it serves HTTPS, and logs the outcome.
func reloadCoordinatorTLS(logger *slog.Logger, srv *coordinator.Server) {
	if !srv.ServesTLS() {
		return
	}
	if err := srv.ReloadTLS(); err != nil {
		logger.Error("SIGHUP: reloading the TLS certificate failed; keeping the current one", "err", err)
		return
	}
	logger.Info("SIGHUP: reloaded the TLS certificate; new connections use it")
}
