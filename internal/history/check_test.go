package history

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// Builders of hand-made histories, all on key "k"; from and to are in
// milliseconds.
func write(client int, value string, from, to int, out Outcome, ts int64) Op {
	return Op{Client: client, Kind: Write, Key: "k", Value: value, Start: at(from), End: at(to), Outcome: out, Timestamp: ts}
}

func del(client, from, to int, out Outcome, ts int64) Op {
	return Op{Client: client, Kind: Delete, Key: "k", Start: at(from), End: at(to), Outcome: out, Timestamp: ts}
}

func read(client, from, to int, value string, ts int64) Op {
	return Op{Client: client, Kind: Read, Key: "k", Value: value, Start: at(from), End: at(to), Outcome: OK, Timestamp: ts}
}

func absent(client, from, to int, ts int64) Op {
	return Op{Client: client, Kind: Read, Key: "k", Start: at(from), End: at(to), Outcome: Absent, Timestamp: ts}
}

func final(o Op) Op { o.Final = true; return o }

func clientTS(o Op) Op { o.ClientTimestamp = true; return o }

func TestCheckFindsEachAnomaly(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
		want map[Anomaly]int // every anomaly not named must be absent
		// excerpt is text the first finding's detail must contain.
		excerpt string
	}{
		{
			name: "stale read after a completed newer read",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				write(1, "b", 20, 100, OK, 200),
				read(2, 30, 40, "b", 200),
				read(3, 50, 60, "a", 100),
			},
			want:    map[Anomaly]int{StaleRead: 1, NotLinearizable: 1},
			excerpt: `client 3 read "k" -> "a"`,
		},
		{
			name: "absent after a read of a value, without a delete",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				read(1, 20, 30, "a", 100),
				absent(2, 40, 50, 0),
			},
			want: map[Anomaly]int{StaleRead: 1, NotLinearizable: 1},
		},
		{
			name: "a failed write visible, hidden, visible again",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				write(1, "b", 20, 30, Failed, 0),
				read(2, 40, 50, "b", 300),
				read(2, 60, 70, "a", 100),
				read(2, 80, 90, "b", 300),
			},
			want:    map[Anomaly]int{VanishedWrite: 1, Reappeared: 1, NotLinearizable: 1},
			excerpt: `client 1 write "k" "b" failed`,
		},
		{
			name: "a value visible, hidden, visible again with rising timestamps",
			// A restamped write: its first attempt is seen, then a
			// concurrent write, then the write again under a new
			// timestamp. No read goes back in time; the register does.
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				write(1, "b", 20, 200, OK, 300),
				write(2, "c", 20, 200, OK, 250),
				read(3, 30, 40, "b", 200),
				read(3, 50, 60, "c", 250),
				read(3, 70, 80, "b", 300),
			},
			want:    map[Anomaly]int{Reappeared: 1, NotLinearizable: 1},
			excerpt: `its one write: [   20.000,   200.000] ms client 1 write "k" "b" ok ts 300`,
		},
		{
			name: "a value visible, deleted, visible again",
			ops: []Op{
				write(0, "a", 0, 300, OK, 200),
				del(1, 20, 300, OK, 150),
				read(2, 30, 40, "a", 100),
				absent(2, 50, 60, 150),
				read(2, 70, 80, "a", 200),
			},
			want: map[Anomaly]int{Reappeared: 1, NotLinearizable: 1},
		},
		{
			name: "a read of a value never written",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				read(1, 20, 30, "zzz", 100),
			},
			want:    map[Anomaly]int{PhantomValue: 1, NotLinearizable: 1},
			excerpt: "no write wrote this value",
		},
		{
			name: "a read of the value of a write refused before it was sent",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				write(1, "b", 20, 30, Refused, 0),
				read(2, 40, 50, "b", 200),
			},
			want:    map[Anomaly]int{PhantomValue: 1, NotLinearizable: 1},
			excerpt: "no write wrote this value",
		},
		{
			name: "a read of a value before its write was sent",
			ops: []Op{
				read(1, 0, 10, "a", 100),
				write(0, "a", 20, 30, Failed, 0),
			},
			want: map[Anomaly]int{PhantomValue: 1, NotLinearizable: 1},
		},
		{
			name: "a lost acknowledged write",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				write(1, "b", 20, 30, OK, 200),
				final(read(9, 100, 110, "a", 100)),
			},
			want:    map[Anomaly]int{LostWrite: 1, NotLinearizable: 1},
			excerpt: `is older than`,
		},
		{
			name: "an acknowledged write shadowed by an earlier one with a larger timestamp",
			ops: []Op{
				write(0, "a", 0, 10, OK, 200),
				write(1, "b", 20, 30, OK, 100),
				final(read(9, 100, 110, "a", 200)),
			},
			want:    map[Anomaly]int{LostWrite: 1, NotLinearizable: 1},
			excerpt: "misses the last acknowledged writes",
		},
		{
			name: "a deleted key comes back",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				del(1, 20, 30, OK, 200),
				final(read(9, 100, 110, "a", 100)),
			},
			want: map[Anomaly]int{LostWrite: 1, NotLinearizable: 1},
		},
		{
			name: "a key absent at the end after an acknowledged write",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				final(absent(9, 100, 110, 0)),
			},
			want: map[Anomaly]int{LostWrite: 1, NotLinearizable: 1},
		},
		{
			name: "absent without a timestamp after a delete: a write after the delete lost",
			ops: []Op{
				del(0, 0, 10, OK, 100),
				write(1, "a", 20, 30, OK, 200),
				final(absent(9, 100, 110, 0)),
			},
			want:    map[Anomaly]int{LostWrite: 1, NotLinearizable: 1},
			excerpt: "misses the last acknowledged writes",
		},
		{
			name: "client timestamps: absent without a timestamp, the newest version a write",
			ops: []Op{
				clientTS(del(0, 0, 10, OK, 100)),
				clientTS(write(1, "a", 20, 30, OK, 200)),
				final(absent(9, 100, 110, 0)),
			},
			want: map[Anomaly]int{LostWrite: 1},
		},
		{
			name: "a 409 to a cluster-stamped write",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				write(1, "b", 20, 30, LostRace, 100),
				final(read(9, 100, 110, "a", 100)),
			},
			want:    map[Anomaly]int{Conflict: 1},
			excerpt: `client 1 write "k" "b" lost-race ts 100`,
		},
		{
			name: "a 409 to a cluster-stamped delete",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				del(1, 20, 30, LostRace, 100),
			},
			want: map[Anomaly]int{Conflict: 1},
		},
		{
			name: "client timestamps: a lost acknowledged write with the highest timestamp",
			ops: []Op{
				clientTS(write(0, "a", 0, 10, OK, 300)),
				clientTS(write(0, "b", 20, 30, OK, 200)),
				final(read(9, 100, 110, "b", 200)),
			},
			want: map[Anomaly]int{LostWrite: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Check(tt.ops)
			for a := range numAnomalies {
				if got := v.Count(a); got != tt.want[a] {
					t.Errorf("%s: %d, want %d", a, got, tt.want[a])
				}
			}
			if v.OK() {
				t.Errorf("OK() = true for a bad history")
			}
			if tt.excerpt != "" && (len(v.Examples) == 0 || !strings.Contains(v.Examples[0].Detail, tt.excerpt)) {
				t.Errorf("the first finding does not contain %q", tt.excerpt)
			}
			if t.Failed() {
				t.Logf("verdict:\n%v", &v)
			}
		})
	}
}

func TestCheckPassesGoodHistories(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
	}{
		{name: "empty"},
		{
			name: "write, read, delete, read",
			ops: []Op{
				absent(1, 0, 5, 0),
				write(0, "a", 10, 20, OK, 100),
				read(1, 30, 40, "a", 100),
				del(0, 50, 60, OK, 200),
				absent(1, 70, 80, 200),
				final(absent(9, 100, 110, 200)),
			},
		},
		{
			name: "reads concurrent with writes see either version",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				write(1, "b", 20, 50, OK, 200),
				read(2, 25, 30, "a", 100),
				read(3, 26, 35, "b", 200),
				read(2, 36, 40, "b", 200),
				write(0, "c", 45, 70, OK, 300),
				read(3, 55, 60, "b", 200),
				final(read(9, 100, 110, "c", 300)),
			},
		},
		{
			name: "a failed write takes effect late",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				write(1, "b", 20, 30, Failed, 0),
				read(2, 40, 50, "a", 100),
				read(2, 60, 70, "b", 300),
				final(read(9, 100, 110, "b", 300)),
			},
		},
		{
			name: "a failed write never takes effect",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				write(1, "b", 20, 30, Failed, 0),
				read(2, 40, 50, "a", 100),
				final(read(9, 100, 110, "a", 100)),
			},
		},
		{
			name: "a failed delete takes effect",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				del(1, 20, 30, Failed, 0),
				absent(2, 40, 50, 150),
				final(absent(9, 100, 110, 150)),
			},
		},
		{
			name: "a failed read says nothing",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				{Client: 2, Kind: Read, Key: "k", Start: at(20), End: at(30), Outcome: Failed},
				final(read(9, 100, 110, "a", 100)),
			},
		},
		{
			// Garbage collection removed the tombstone: the key reads as
			// never written, with no timestamp.
			name: "a deleted key read absent without a timestamp once its tombstone is collected",
			ops: []Op{
				write(0, "a", 0, 10, OK, 100),
				del(1, 20, 30, OK, 200),
				absent(2, 40, 50, 200),
				absent(3, 60, 70, 0),
				final(absent(9, 100, 110, 0)),
			},
		},
		{
			name: "client timestamps: a collected tombstone, the newest version",
			ops: []Op{
				clientTS(write(0, "a", 0, 10, OK, 100)),
				clientTS(del(1, 20, 30, OK, 200)),
				final(absent(9, 100, 110, 0)),
			},
		},
		{
			// The failed delete's timestamp, the client's, may be newer
			// than the write's: it may have taken effect, and its
			// tombstone been collected.
			name: "client timestamps: a collected tombstone after a delete that failed",
			ops: []Op{
				clientTS(write(0, "a", 0, 10, OK, 100)),
				clientTS(del(1, 20, 30, Failed, 0)),
				final(absent(9, 100, 110, 0)),
			},
		},
		{
			name: "client timestamps: the newest wins, older ones lose with 409",
			ops: []Op{
				clientTS(write(0, "a", 0, 10, OK, 300)),
				clientTS(write(0, "b", 20, 30, LostRace, 300)),
				clientTS(write(1, "c", 25, 35, OK, 400)),
				read(2, 40, 50, "c", 400),
				final(read(9, 100, 110, "c", 400)),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Check(tt.ops)
			if !v.OK() {
				t.Errorf("a good history fails:\n%v", &v)
			}
		})
	}
}

// linearizableHistory simulates clients of one linearizable register on
// several keys: each operation takes effect at one instant between its
// start and end, stamped by a clock that only goes up. Some writes and
// deletes fail (their answer is lost), taking effect or not; some reads
// fail.
func linearizableHistory(seed uint64, clients, perClient int, keys []string) []Op {
	rng := rand.New(rand.NewPCG(seed, 1))
	type event struct {
		at time.Time
		op *Op
	}
	var ops []*Op
	var effects []event
	for c := range clients {
		now := 0
		for i := range perClient {
			start := now + rng.IntN(5)
			end := start + 1 + rng.IntN(40)
			now = end
			o := &Op{Client: c, Key: keys[rng.IntN(len(keys))], Start: at(start), End: at(end), Outcome: OK}
			switch p := rng.IntN(10); {
			case p < 3:
				o.Kind, o.Value = Write, fmt.Sprintf("c%d-%d", c, i)
			case p < 4:
				o.Kind = Delete
			}
			lin := o.Start.Add(time.Duration(rng.Int64N(int64(o.End.Sub(o.Start)) + 1)))
			failed := rng.IntN(30) == 0
			if failed {
				o.Outcome = Failed
			}
			if failed && o.Kind != Read {
				// It takes effect late, or never.
				if rng.IntN(2) == 0 {
					lin = o.End.Add(time.Duration(rng.IntN(200)) * time.Millisecond)
					effects = append(effects, event{lin, o})
				}
			} else {
				effects = append(effects, event{lin, o})
			}
			ops = append(ops, o)
		}
	}
	slices.SortStableFunc(effects, func(a, b event) int { return a.at.Compare(b.at) })
	state := map[string]Op{} // key → the version it holds
	var ts int64 = 1000
	for _, e := range effects {
		o := e.op
		switch o.Kind {
		case Read:
			if o.Outcome == Failed {
				continue
			}
			cur, ok := state[o.Key]
			switch {
			case !ok:
				o.Outcome = Absent
			case cur.Kind == Delete:
				o.Outcome, o.Timestamp = Absent, cur.Timestamp
			default:
				o.Value, o.Timestamp = cur.Value, cur.Timestamp
			}
		default:
			ts++
			if o.Outcome == OK {
				o.Timestamp = ts
			}
			state[o.Key] = Op{Kind: o.Kind, Value: o.Value, Timestamp: ts}
		}
	}
	var out []Op
	last := 0
	for _, o := range ops {
		out = append(out, *o)
		last = max(last, int(o.End.Sub(t0)/time.Millisecond))
	}
	for i, k := range keys {
		r := Op{Client: clients + i, Kind: Read, Key: k, Start: at(last + 1000), End: at(last + 1010), Final: true, Outcome: Absent}
		if cur, ok := state[k]; ok {
			r.Timestamp = cur.Timestamp
			if cur.Kind == Write {
				r.Outcome, r.Value = OK, cur.Value
			}
		}
		out = append(out, r)
	}
	return out
}

func TestCheckPassesConcurrentLinearizableHistories(t *testing.T) {
	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			ops := linearizableHistory(seed, 12, 300, []string{"h1", "h2", "h3"})
			v := Check(ops)
			if !v.OK() || v.Linearizable != 3 {
				t.Fatalf("a linearizable history fails:\n%v", &v)
			}
			if v.Failed == 0 {
				t.Errorf("the history has no failed write: it tests less than it claims")
			}
		})
	}
}

// TestCheckFindsOneStaleReadInALargeHistory plants one stale read in a long
// linearizable history and expects Porcupine and the read check to find it.
func TestCheckFindsOneStaleReadInALargeHistory(t *testing.T) {
	ops := linearizableHistory(7, 12, 300, []string{"h"})
	// A is the first read of a value, C the first read of a newer one, B
	// the first read that starts after C ended: make B return A's version.
	reads := slices.Clone(ops)
	slices.SortStableFunc(reads, func(a, b Op) int { return a.Start.Compare(b.Start) })
	var a, c *Op
	planted := false
	for i := range reads {
		o := &reads[i]
		switch {
		case o.Kind != Read || o.Outcome != OK || o.Final:
		case a == nil:
			a = o
		case c == nil && o.Timestamp > a.Timestamp:
			c = o
		case c != nil && o.Start.After(c.End):
			o.Value, o.Timestamp = a.Value, a.Timestamp
			planted = true
		}
		if planted {
			break
		}
	}
	if !planted {
		t.Fatal("found no read to make stale")
	}
	ops = reads
	v := Check(ops)
	if v.Count(NotLinearizable) != 1 || v.Count(StaleRead) == 0 {
		t.Fatalf("the planted stale read was not found:\n%v", &v)
	}
	t.Logf("verdict:\n%v", &v)
	dir := t.TempDir()
	paths, err := v.WriteVisualizations(dir)
	if err != nil || len(paths) != 1 {
		t.Fatalf("WriteVisualizations: %v, %v", paths, err)
	}
	if fi, err := os.Stat(paths[0]); err != nil || fi.Size() == 0 {
		t.Fatalf("visualization %s: %v", paths[0], err)
	}
}

func TestCheckReportsATimeoutAsUnknown(t *testing.T) {
	ops := linearizableHistory(3, 12, 2000, []string{"h"})
	v := Options{Timeout: time.Nanosecond}.Check(ops)
	if len(v.Unknown) == 0 && v.Linearizable == 1 {
		t.Skip("Porcupine decided 24000 operations within a nanosecond")
	}
	if len(v.Unknown) != 1 || v.OK() || v.Linearizable != 0 {
		t.Fatalf("want the key unknown and the verdict not OK:\n%v", &v)
	}
	if !strings.Contains(v.String(), "UNKNOWN") {
		t.Errorf("the verdict does not say UNKNOWN:\n%v", &v)
	}
}

// TestAbsentReadWithABodyIsAbsent: a read that answered "absent" is
// absent whatever body came with it (an HTTP 404 has one).
func TestAbsentReadWithABodyIsAbsent(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ops := []Op{
		{Client: 1, Kind: Write, Key: "k", Value: "v", Start: at(0), End: at(10), Outcome: OK, Timestamp: 1},
		{Client: 1, Kind: Delete, Key: "k", Start: at(20), End: at(30), Outcome: OK, Timestamp: 2},
		{Client: 2, Kind: Read, Key: "k", Value: "404 page not found\n", Start: at(40), End: at(50), Outcome: Absent, Timestamp: 2, Final: true},
	}
	if v := Check(ops); !v.OK() {
		t.Errorf("a delete then an absent read with a body: %v", v)
	}
}
