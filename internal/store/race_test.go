//go:build race

package store

// raceDetector: the race detector makes the store's measuring tests slow
// (TestLargeValuesDoNotSlowSmallReads: about 57 s instead of 10) and their
// figures meaningless.
const raceDetector = true
