// Command host runs a wasip1 module deterministically: its random source is
// a ChaCha8 stream keyed by the seed, its clocks are virtual (they start at
// a fixed instant and advance 1 µs per reading), and a sleep advances the
// virtual clock instead of waiting. Under wasip1 the Go runtime runs every
// goroutine on one thread and takes its randomness (select order, map
// iteration, the scheduler's choices, math/rand's seed) from the host, so
// the same module and seed give the same run, byte for byte.
//
// The module gets the seed as its first argument, and the host's further
// arguments after it.
//
//	host MODULE.wasm SEED [ARG...]
package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: host MODULE.wasm SEED [ARG...]")
		os.Exit(2)
	}
	seed, err := strconv.ParseUint(os.Args[2], 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "host: SEED:", err)
		os.Exit(2)
	}
	if err := run(os.Args[1], seed, os.Args[3:]); err != nil {
		fmt.Fprintln(os.Stderr, "host:", err)
		os.Exit(1)
	}
}

func run(path string, seed uint64, args []string) error {
	module, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ctx := context.Background()
	cache, err := wazero.NewCompilationCacheWithDir(filepath.Join(os.TempDir(), "tako-sim-wazero-cache"))
	if err != nil {
		return err
	}
	rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache))
	defer rt.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, rt)

	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	now := int64(1_700_000_000_000_000_000) // virtual nanoseconds since the Unix epoch
	cfg := wazero.NewModuleConfig().
		WithArgs(append([]string{"guest", strconv.FormatUint(seed, 10)}, args...)...).
		WithStdout(os.Stdout).
		WithStderr(os.Stderr).
		WithRandSource(rand.NewChaCha8(key)).
		WithWalltime(func() (int64, int32) { now += 1000; return now / 1e9, int32(now % 1e9) }, 1).
		WithNanotime(func() int64 { now += 1000; return now }, 1).
		WithNanosleep(func(ns int64) { now += ns })
	_, err = rt.InstantiateWithConfig(ctx, module, cfg)
	return err
}
