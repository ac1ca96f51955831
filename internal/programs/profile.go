package programs

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
)

// ProfileDirEnv names the environment variable that makes tako-node and
// tako-proxy write a CPU profile of their whole run: DIR/PROGRAM-ID.cpu.pprof,
// written when the process stops cleanly. It is a diagnostic for
// performance work (scripts/profile-cluster.sh); tako-cluster's children
// inherit it.
const ProfileDirEnv = "TAKO_CPUPROFILE_DIR"

// startProfile starts the CPU profile when ProfileDirEnv is set, and
// returns the function that writes it out.
func startProfile(program, id string, logger *slog.Logger) (stop func()) {
	dir := os.Getenv(ProfileDirEnv)
	if dir == "" {
		return func() {}
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-%s.cpu.pprof", program, id))
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		logger.Warn("not profiling", "env", ProfileDirEnv, "err", err)
		return func() {}
	}
	logger.Info("writing a CPU profile of this run", "path", path)
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
