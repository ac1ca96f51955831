package tako

import (
	"context"
	"fmt"

	"github.com/takodb/tako/internal/auth"
)

// runToken is "tako token ROLE NAME": it makes a random token and prints
// it, and the lines of the auth section that grant it ROLE. Only the
// token's SHA-256 goes into the configuration.
func runToken(ctx context.Context, r *runner, args []string) error {
	fs := r.commandFlags("token", "ROLE NAME", `
Makes a new random token and prints it, then the lines to add under
auth.tokens in the configuration to grant it ROLE (read, write or admin).
The configuration holds only the token's SHA-256: keep the token itself
where the client that uses it can read it (TAKO_TOKEN, -token-file).

Example:
  tako token write app`)
	pos, err := r.parseCommand(fs, args, 2, 2)
	if err != nil {
		return err
	}
	role, err := auth.ParseRole(pos[0])
	if err != nil {
		return usageError(fs.Name(), err.Error())
	}
	token, hash, err := auth.Generate()
	if err != nil {
		return err
	}
	fmt.Fprintf(r.stdout, "token: %s\n\n# under auth: tokens: in the configuration\n    %s\n", token, auth.ConfigLine(pos[1], hash, role))
	return nil
}
