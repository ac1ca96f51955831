//go:build race

package sim

// raceDetector: the race detector slows a run several times, and a run's
// liveness checks (a migration converges, garbage collection removes a
// tombstone) wait on wall time, so fewer seeds run, fewer at once.
const raceDetector = true
