package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// backupMiB is how much TestBackupRate loads: TAKO_BACKUP_MIB, or 64 MiB
// (CI: the figures are logged, not judged).
func backupMiB(t *testing.T) (int64, bool) {
	t.Helper()
	s := os.Getenv("TAKO_BACKUP_MIB")
	if s == "" {
		return 64, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		t.Fatalf("TAKO_BACKUP_MIB=%q: want a positive number of MiB", s)
	}
	return n, true
}

// TestBackupRate loads a two-node cluster (every key on both) with random
// 64 KiB values, then times, in the same run: the refill of n2 after it
// lost its disk (the reference of issue 19: a backup and a restore must
// run at half its rate or more), tako backup of the whole cluster, and
// tako restore of the archive into an empty cluster of the same shape.
// With TAKO_BACKUP_MIB set (scripts/bench-backup.sh: 1 GiB) it prints the
// figures line and fails when backup or restore is below half the refill's
// rate; in CI (64 MiB) it logs them.
func TestBackupRate(t *testing.T) {
	mib, judged := backupMiB(t)
	total := mib << 20
	a := startCluster(t, [][]string{{"n1"}, {"n2"}}, 2, "")
	ld := loadRandomValues(t, a.http["n1"], "backup/", total, 8)
	mb := float64(ld.bytes) / 1e6

	// The reference: n2 loses its disk and refills from n1.
	if err := a.nodes["n2"].stop(t); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(a.dataDir("n2")); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	a.startNode("n2")
	run := waitRecovered(t, a.nodes["n2"], a.http["n2"], t0, time.Duration(total/(10<<20))*time.Second+time.Minute)
	refill := run.rate()

	dir := t.TempDir()
	file := filepath.Join(dir, "rate.tako")
	start := time.Now()
	if code, out := takoCmd(t, dir, "backup", "-cfg", a.cfg, file); code != 0 {
		t.Fatalf("tako backup: exit %d: %s", code, out)
	}
	backupTook := time.Since(start)
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}

	b := startCluster(t, [][]string{{"m1"}, {"m2"}}, 2, "")
	start = time.Now()
	code, out := takoCmd(t, dir, "restore", "-cfg", b.cfg, file)
	if code != 0 {
		t.Fatalf("tako restore: exit %d: %s", code, out)
	}
	restoreTook := time.Since(start)
	if !strings.Contains(out, fmt.Sprintf("%d records read", len(ld.sums))) {
		t.Fatalf("tako restore did not read the %d records loaded: %s", len(ld.sums), out)
	}
	checked := storeHoldsAll(t, b.binary["m2"], ld, nil)

	backup, restore := mb/backupTook.Seconds(), mb/restoreTook.Seconds()
	line := fmt.Sprintf("backup: N %d MiB (%d keys), refill %.1f MB/s, backup %.1f MB/s (%.2f of the refill), restore %.1f MB/s (%.2f of the refill); archive %.1f MB",
		mib, len(ld.sums), refill, backup, backup/refill, restore, restore/refill, float64(st.Size())/1e6)
	t.Log(line)
	t.Logf("backup took %v, restore %v (every key on both nodes: %.1f MB written in all); m2 holds all %d values",
		backupTook.Round(time.Millisecond), restoreTook.Round(time.Millisecond), 2*mb, checked)
	if judged {
		fmt.Println(line)
		if backup < refill/2 || restore < refill/2 {
			t.Errorf("backup or restore below half the refill rate: %s", line)
		}
	}
}
