package archive

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/takodb/tako/internal/keyhash"
	"github.com/takodb/tako/internal/record"
)

// testRanges cut the hash space in three.
var testRanges = []Range{{0, 1<<30 - 1}, {1 << 30, 3<<30 - 1}, {3 << 30, 1<<32 - 1}}

// testEntries returns n entries, values and tombstones, grouped by the
// range of testRanges they hash into, each group in (hash, key) order.
func testEntries(n int, seed uint64) [][]Entry {
	rng := rand.New(rand.NewPCG(seed, 1))
	groups := make([][]Entry, len(testRanges))
	for i := range n {
		key := []byte(fmt.Sprintf("key/%d/%d", i, rng.IntN(1000)))
		rec := record.Record{Timestamp: int64(1 + rng.IntN(1<<40))}
		if rng.IntN(5) == 0 {
			rec.Tombstone = true
		} else {
			rec.Value = bytes.Repeat([]byte{byte(i)}, rng.IntN(300))
			if rng.IntN(4) == 0 {
				rec.ExpiresAt = rec.Timestamp + int64(1+rng.IntN(1<<30))
			}
		}
		h := keyhash.Sum(key)
		for r, rg := range testRanges {
			if rg.Contains(h) {
				groups[r] = append(groups[r], Entry{Key: key, Record: rec})
			}
		}
	}
	for _, g := range groups {
		slices.SortFunc(g, func(a, b Entry) int {
			return cmp.Or(cmp.Compare(keyhash.Sum(a.Key), keyhash.Sum(b.Key)), bytes.Compare(a.Key, b.Key))
		})
	}
	return groups
}

// writeArchive writes groups as an archive, the ranges' frames
// interleaved, each frame of up to per entries.
func writeArchive(t testing.TB, groups [][]Entry, per int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, Header{ID: "a1", Created: time.Unix(1700000000, 0).UTC(), AsOf: 1700000000000000, Source: "test", Ranges: testRanges})
	if err != nil {
		t.Fatal(err)
	}
	pos := make([]int, len(groups))
	for more := true; more; {
		more = false
		for r, g := range groups {
			if pos[r] >= len(g) {
				continue
			}
			end := min(pos[r]+per, len(g))
			if err := w.Records(r, g[pos[r]:end]); err != nil {
				t.Fatal(err)
			}
			pos[r] = end
			more = true
		}
	}
	for r := range groups {
		if err := w.RangeDone(r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.End(time.Unix(1700000100, 0)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readAll reads an archive's entries, grouped by range.
func readAll(t *testing.T, data []byte) ([][]Entry, Summary) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	groups := make([][]Entry, len(r.Header().Ranges))
	var sum Summary
	for {
		f, err := r.Next()
		if err == io.EOF {
			return groups, sum
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range f.Entries {
			groups[f.Range] = append(groups[f.Range], Entry{Key: bytes.Clone(e.Key), Record: e.Record.Clone()})
		}
		if f.Kind == KindEnd {
			sum = f.Summary
		}
	}
}

func sameEntries(t *testing.T, got, want [][]Entry) {
	t.Helper()
	for r := range want {
		if len(got[r]) != len(want[r]) {
			t.Fatalf("range %d: %d entries, want %d", r, len(got[r]), len(want[r]))
		}
		for i := range want[r] {
			g, w := got[r][i], want[r][i]
			if !bytes.Equal(g.Key, w.Key) || record.Compare(g.Record, w.Record) != 0 || g.Record.Tombstone != w.Record.Tombstone {
				t.Fatalf("range %d entry %d: %q %+v, want %q %+v", r, i, g.Key, g.Record, w.Key, w.Record)
			}
		}
	}
}

func TestAnArchiveReadsBackWhatWasWritten(t *testing.T) {
	want := testEntries(3000, 1)
	data := writeArchive(t, want, 97)
	got, sum := readAll(t, data)
	sameEntries(t, got, want)
	var records, tombstones uint64
	for _, g := range want {
		for _, e := range g {
			records++
			if e.Record.Tombstone {
				tombstones++
			}
		}
	}
	if sum.Records != records || sum.Tombstones != tombstones || !sum.Finished.Equal(time.Unix(1700000100, 0)) {
		t.Fatalf("summary %+v, want %d records, %d tombstones", sum, records, tombstones)
	}
	s, err := Scan(bytes.NewReader(data))
	if err != nil || !s.Complete || s.Header.ID != "a1" || s.Header.AsOf != 1700000000000000 || s.Good != int64(len(data)) {
		t.Fatalf("Scan: %+v, %v", s, err)
	}
	t.Logf("%d records, %d bytes of keys and values, archive of %d bytes", sum.Records, sum.Bytes, len(data))
}

// TestEveryTruncationIsRefused: an archive cut anywhere is never read as
// complete, and the error says where and why.
func TestEveryTruncationIsRefused(t *testing.T) {
	data := writeArchive(t, testEntries(200, 2), 13)
	for cut := 0; cut < len(data); cut++ {
		s, err := Scan(bytes.NewReader(data[:cut]))
		if err == nil {
			t.Fatalf("cut at %d of %d: Scan says complete", cut, len(data))
		}
		var ce *CorruptError
		if !errors.Is(err, ErrIncomplete) && !errors.As(err, &ce) {
			t.Fatalf("cut at %d: %v, want ErrIncomplete or a *CorruptError", cut, err)
		}
		if s != nil && (s.Complete || s.Good > int64(cut)) {
			t.Fatalf("cut at %d: state %+v", cut, s)
		}
	}
}

// TestEveryDamagedByteIsFound flips each byte of an archive in turn: every
// one is refused, with the offset of the frame it is in.
func TestEveryDamagedByteIsFound(t *testing.T) {
	data := writeArchive(t, testEntries(100, 3), 11)
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x5a
		_, err := Scan(bytes.NewReader(bad))
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Fatalf("byte %d flipped: %v, want a *CorruptError", i, err)
		}
		if ce.Offset > int64(i) {
			t.Fatalf("byte %d flipped: the error points at %d, after it: %v", i, ce.Offset, err)
		}
	}
	// Bytes after the end frame are damage too.
	if _, err := Scan(bytes.NewReader(append(bytes.Clone(data), 0))); err == nil {
		t.Fatal("an archive with a byte after its end frame is read as complete")
	}
}

// TestAnInterruptedBackupResumes cuts an archive inside a frame, resumes
// it from the Scan of what is left, and gets every entry once.
func TestAnInterruptedBackupResumes(t *testing.T) {
	want := testEntries(1000, 4)
	full := writeArchive(t, want, 50)
	for _, cut := range []int{len(full) / 3, len(full)/2 + 7, len(full) - 3} {
		part := bytes.Clone(full[:cut])
		s, err := Scan(bytes.NewReader(part))
		var ce *CorruptError
		if !errors.Is(err, ErrIncomplete) && !(errors.As(err, &ce) && ce.Truncated) {
			t.Fatalf("cut at %d: %v, want an incomplete or truncated archive", cut, err)
		}
		part = part[:s.Good]
		buf := bytes.NewBuffer(part)
		w, err := AppendWriter(buf, s)
		if err != nil {
			t.Fatal(err)
		}
		for r, g := range want {
			if s.Done[r] {
				continue
			}
			from := 0
			if s.After[r] != nil {
				from = slices.IndexFunc(g, func(e Entry) bool { return bytes.Equal(e.Key, s.After[r]) }) + 1
			}
			if from < len(g) {
				if err := w.Records(r, g[from:]); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.RangeDone(r); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := w.End(time.Now()); err != nil {
			t.Fatal(err)
		}
		got, _ := readAll(t, buf.Bytes())
		sameEntries(t, got, want)
	}
}

func TestTheWriterRefusesWhatWouldNotRead(t *testing.T) {
	w, err := NewWriter(io.Discard, Header{Ranges: testRanges})
	if err != nil {
		t.Fatal(err)
	}
	g := testEntries(50, 5)
	if err := w.Records(1, g[0][:1]); err == nil {
		t.Error("an entry of range 0 written as range 1")
	}
	if err := w.Records(0, []Entry{g[0][1], g[0][0]}); err == nil {
		t.Error("entries out of order written")
	}
	if err := w.Records(0, []Entry{{Key: nil}}); err == nil {
		t.Error("an empty key written")
	}
	if err := w.Records(7, g[0]); err == nil {
		t.Error("a range the header does not have written")
	}
	if _, err := w.End(time.Now()); err == nil {
		t.Error("an archive ended with ranges not done")
	}
	if _, err := NewWriter(io.Discard, Header{}); err == nil {
		t.Error("a header without ranges written")
	}
}

func TestSomethingElseIsNotAnArchive(t *testing.T) {
	for _, in := range []string{"", "TAKO", "hello, world, this is not an archive"} {
		_, err := NewReader(bytes.NewReader([]byte(in)))
		var ce *CorruptError
		if !errors.As(err, &ce) || ce.Offset != 0 {
			t.Errorf("%q: %v, want a *CorruptError at 0", in, err)
		}
	}
}

// FuzzScan: whatever the bytes, Scan neither panics nor calls damage
// complete, and a complete archive's records all read back.
func FuzzScan(f *testing.F) {
	f.Add(writeArchive(f, testEntries(20, 6), 3))
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Scan(bytes.NewReader(data))
		if err == nil && (s == nil || !s.Complete) {
			t.Fatalf("no error and not complete: %+v", s)
		}
		if err != nil && s != nil && s.Complete {
			t.Fatalf("an error (%v) and complete", err)
		}
	})
}

// TestEntriesWrittenBeforeExpiriesStillRead decodes entries in the layout
// archives had before records could expire (flags bit 1 unknown then), and
// checks that an entry without expiry is still written that way.
func TestEntriesWrittenBeforeExpiriesStillRead(t *testing.T) {
	old := []byte{
		3,               // range index
		1, 'a', 0x14, 0, // key "a", timestamp 10, flags 0
		2, 'h', 'i', // value "hi"
		1, 'b', 0x16, 1, 0, // key "b", timestamp 11, a tombstone
	}
	idx, entries, err := decodeEntries(old)
	if err != nil || idx != 3 || len(entries) != 2 {
		t.Fatalf("decodeEntries(old) = %d, %d entries, %v", idx, len(entries), err)
	}
	want := []Entry{
		{Key: []byte("a"), Record: record.Record{Timestamp: 10, Value: []byte("hi")}},
		{Key: []byte("b"), Record: record.Record{Timestamp: 11, Tombstone: true}},
	}
	var again []byte
	again = binary.AppendUvarint(again, 3)
	for i, e := range entries {
		if !bytes.Equal(e.Key, want[i].Key) || record.Compare(e.Record, want[i].Record) != 0 || e.Record.ExpiresAt != 0 {
			t.Errorf("entry %d = %q %+v, want %q %+v", i, e.Key, e.Record, want[i].Key, want[i].Record)
		}
		again = appendEntry(again, e)
	}
	if !bytes.Equal(again, old) {
		t.Errorf("entries without expiry encode as %x, want the old layout %x", again, old)
	}
	// With an expiry, and what is refused.
	exp := appendEntry(binary.AppendUvarint(nil, 0), Entry{Key: []byte("c"), Record: record.Record{Timestamp: 5, Value: []byte("v"), ExpiresAt: 9}})
	if _, es, err := decodeEntries(exp); err != nil || es[0].Record.ExpiresAt != 9 {
		t.Errorf("an entry that expires decodes as %+v, %v", es, err)
	}
	for name, bad := range map[string][]byte{
		"expiry of 0":              {0, 1, 'c', 0x0a, 2, 0, 0},
		"tombstone with an expiry": {0, 1, 'c', 0x0a, 3, 0x12, 0},
		"unknown flag":             {0, 1, 'c', 0x0a, 4, 0},
	} {
		if _, _, err := decodeEntries(bad); err == nil {
			t.Errorf("%s: decodeEntries(%x) took it", name, bad)
		}
	}
}
