package programs

import (
	"log/slog"

	"github.com/takodb/tako/internal/private"
)

// tightenFiles takes the permissions of group and others away from what an
// older version (or a looser umask) left in a program's var directory: the
// shared directories themselves (not their content, which belongs to other
// processes) and every directory and file of the trees the program owns.
// The program has set its umask (private.Umask) before, so what it creates
// from now on is private already. A path it cannot change (a directory that
// another user owns) is logged, and the program goes on.
func tightenFiles(logger *slog.Logger, shared []string, owned ...string) {
	if err := private.Tighten(shared...); err != nil {
		logger.Warn("could not make a directory private to this user: other users may list it", "err", err)
	}
	for _, dir := range owned {
		if err := private.TightenTree(dir); err != nil {
			logger.Warn("could not make every file private to this user: other users may read some", "dir", dir, "err", err)
		}
	}
}
