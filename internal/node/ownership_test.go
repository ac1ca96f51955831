package node

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/takodb/tako/internal/config"
)

// TestOwnershipForgetsWhatAMigrationTookAway: a node that last saw a
// migration that removes it (it was stopped, or cut off, before the
// promotion) counts the ranges it was leaving as gained when a later
// configuration gives them back; restarting within the same migration,
// following its promotion, or its abandonment gains nothing.
func TestOwnershipForgetsWhatAMigrationTookAway(t *testing.T) {
	dep := func(name string, buckets ...string) string {
		var b strings.Builder
		b.WriteString("  " + name + ":\n    hash: {buckets_per_key: 2, points_per_bucket: 15}\n    buckets:\n")
		for _, id := range buckets {
			b.WriteString("      b" + id[1:] + ": {" + id + ": [h, " + id[1:] + "1, " + id[1:] + "2]}\n")
		}
		return b.String()
	}
	parse := func(active, target string, deps ...string) *config.Config {
		t.Helper()
		text := "active_deployment: " + active + "\n"
		if target != "" {
			text += "target_deployment: " + target + "\n"
		}
		cfg, err := config.Parse([]byte(text + "deployments:\n" + strings.Join(deps, "")))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	three := dep("three", "n1", "n2", "n3")
	two := dep("two", "n2", "n3")
	again := dep("again", "n1", "n2", "n3")
	leaving := parse("three", "two", three, two)
	all := replicatedRanges(parse("three", "", three), "n1")

	for _, tc := range []struct {
		name string
		next *config.Config
		want []hashRange
	}{
		{"the same migration (a restart during it)", leaving, nil},
		{"its promotion (n1 not named)", parse("two", "", two), nil},
		{"another migration that holds n1's ranges elsewhere", parse("three", "four", three, dep("four", "n2", "n3", "n4")), nil},
		{"the migration abandoned", parse("three", "", three), nil},
		{"n1 added back in a new migration, after a promotion it did not see", parse("two", "again", two, again), all},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := &ownership{dir: t.TempDir()}
			o.save(leaving, "n1", testLogger(t))
			// As a restart would: the file, read again.
			o = &ownership{dir: o.dir}
			if got := o.gained(tc.next, "n1"); !slices.Equal(got, tc.want) {
				t.Errorf("gained %v, want %v", got, tc.want)
			}
		})
	}

	// A node that follows the promotion saves it: what it left is then not
	// held, and coming back later gains it, as before this change.
	o := &ownership{dir: t.TempDir()}
	o.save(leaving, "n1", testLogger(t))
	o.save(parse("two", "", two), "n1", testLogger(t))
	if got := o.gained(parse("two", "again", two, again), "n1"); !slices.Equal(got, all) {
		t.Errorf("after following the promotion, coming back gains %v, want %v", got, all)
	}
	// A file from before Leaving was saved reads as before.
	old := &ownership{dir: t.TempDir()}
	if err := writeFileAtomic(vfs.Default, old.dir, ownershipFile, []byte(`{"Held":[[0,4294967295]]}`)); err != nil {
		t.Fatal(err)
	}
	if got := old.gained(parse("two", "again", two, again), "n1"); len(got) != 0 {
		t.Errorf("an old file holding everything: gained %v, want nothing", got)
	}
}

// TestTheNodesOwnFilesLiveOnTheStoresFileSystem: with Options.FS, the
// node's own files (what it owns) are written there, beside the store,
// and nothing to the real disk at DataDir: a simulated crash of that file
// system (internal/sim) treats them as it treats the store.
func TestTheNodesOwnFilesLiveOnTheStoresFileSystem(t *testing.T) {
	cfg, err := config.Parse([]byte("active_deployment: d\ndeployments:\n  d:\n    buckets:\n      b1: {n1: [127.0.0.1, 1]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	fs := vfs.NewMem()
	dir := filepath.Join(t.TempDir(), "n1")
	n, err := New(Options{ID: "n1", Config: cfg, DataDir: dir, FS: fs, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := fs.Stat(fs.PathJoin(dir, ownershipFile)); err != nil {
		t.Errorf("%s on the store's file system: %v", ownershipFile, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the real disk at DataDir: %v, want nothing there", err)
	}
}

// TestAnEndedRecoveryStaysEndedAfterACrash: the recovery state's removal
// is synced, so that a crash right after a recovery ended (or a new store
// was judged new) does not bring the recovery back.
func TestAnEndedRecoveryStaysEndedAfterACrash(t *testing.T) {
	fs := vfs.NewCrashableMem()
	if err := fs.MkdirAll("/n1", 0o755); err != nil {
		t.Fatal(err)
	}
	root, err := fs.OpenDir("/")
	if err != nil {
		t.Fatal(err)
	}
	if err := root.Sync(); err != nil { // so that /n1 survives a crash
		t.Fatal(err)
	}
	root.Close()
	if err := writeFileAtomic(fs, "/n1", recoveryFile, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := removeRecoveryFile(fs, "/n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.CrashClone(vfs.CrashCloneCfg{}).Stat("/n1"); err != nil {
		t.Fatalf("the directory is lost in a crash: %v", err)
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	if _, err := crashed.Stat(crashed.PathJoin("/n1", recoveryFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after a crash the removed recovery state is back: %v", err)
	}
	// Removing what is not there is no error.
	if err := removeRecoveryFile(fs, "/n1"); err != nil {
		t.Fatal(err)
	}
}
