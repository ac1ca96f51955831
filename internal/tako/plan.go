package tako

import (
	"context"
	"fmt"
	"strconv"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/coordinator"
)

func runPlan(_ context.Context, r *runner, args []string) error {
	fs := r.commandFlags("plan", "OLD.yaml NEW.yaml", `
Compares two configuration files and prints what changing the cluster from
OLD to NEW would move: the share of the key space whose replicas change, the
nodes that join and leave, what each node gains and loses, and whether keys
would lose every current replica or fall below the new write quorum. Needs
no server. Exits 1 when keys would lose every replica (make the change a
migration: NEW as target_deployment first), 2 on a bad file.

Example:
  tako plan examples/local_cluster.yaml examples/migration/1-add-bucket.yaml`)
	pos, err := r.parseCommand(fs, args, 2, 2)
	if err != nil {
		return err
	}
	cur, err := loadConfig(pos[0])
	if err != nil {
		return err
	}
	next, err := loadConfig(pos[1])
	if err != nil {
		return err
	}
	report := coordinator.Plan(cur, next)
	fmt.Fprint(r.stdout, report.String())
	if report.LosesAll > 0 {
		return answerNo("plan: %s%% of the key space would lose every one of its current replicas", strconv.FormatFloat(100*report.LosesAll, 'f', 1, 64))
	}
	return nil
}

// loadConfig loads and validates a configuration file; its errors name
// the file.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	return cfg, nil
}
