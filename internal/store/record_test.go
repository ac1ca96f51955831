package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/takodb/tako/internal/keyhash"
)

// sameRecord reports whether a and b are the same record, value bytes
// included (an empty Value equals a nil one).
func sameRecord(a, b Record) bool {
	return a.Timestamp == b.Timestamp && a.Tombstone == b.Tombstone && bytes.Equal(a.Value, b.Value) && a.ExpiresAt == b.ExpiresAt
}

func live(ts int64, value string) Record { return Record{Timestamp: ts, Value: []byte(value)} }

func tomb(ts int64) Record { return Record{Timestamp: ts, Tombstone: true} }

func TestCompare(t *testing.T) {
	tests := []struct {
		name string
		a, b Record
		want int // sign only
	}{
		{"newer timestamp wins", live(11, "a"), live(10, "z"), 1},
		{"older timestamp loses", live(10, "z"), live(11, "a"), -1},
		{"newer value wins over older tombstone", live(11, "a"), tomb(10), 1},
		{"newer tombstone wins over older value", tomb(11), live(10, "a"), 1},
		{"negative timestamps are ordered too", live(-1, "a"), live(-2, "a"), 1},
		{"extreme timestamps", live(math.MaxInt64, ""), live(math.MinInt64, "z"), 1},
		{"tombstone wins a timestamp tie", tomb(10), live(10, "zzz"), 1},
		{"value loses a timestamp tie to a tombstone", live(10, "zzz"), tomb(10), -1},
		{"larger bytes win a timestamp tie", live(10, "b"), live(10, "a"), 1},
		{"smaller bytes lose a timestamp tie", live(10, "a"), live(10, "b"), -1},
		{"longer bytes win over their prefix", live(10, "ab"), live(10, "a"), 1},
		{"any bytes win over an empty value", live(10, "\x00"), live(10, ""), 1},
		{"identical values", live(10, "a"), live(10, "a"), 0},
		{"identical empty values", live(10, ""), Record{Timestamp: 10}, 0},
		{"identical tombstones", tomb(10), tomb(10), 0},
		{"tombstone values are not compared", Record{Timestamp: 10, Tombstone: true, Value: []byte("x")}, tomb(10), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sign(Compare(tt.a, tt.b)); got != tt.want {
				t.Errorf("Compare(%v, %v) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := sign(Compare(tt.b, tt.a)); got != -tt.want {
				t.Errorf("Compare(%v, %v) = %d, want %d (antisymmetry)", tt.b, tt.a, got, -tt.want)
			}
		})
	}
}

func sign(c int) int {
	switch {
	case c > 0:
		return 1
	case c < 0:
		return -1
	}
	return 0
}

func TestOutcomeString(t *testing.T) {
	tests := []struct {
		o    Outcome
		want string
	}{
		{Written, "written"},
		{Unchanged, "unchanged"},
		{Stale, "stale"},
		{0, "Outcome(0)"},
		{42, "Outcome(42)"},
	}
	for _, tt := range tests {
		if got := tt.o.String(); got != tt.want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(tt.o), got, tt.want)
		}
	}
}

func TestEncodeKey(t *testing.T) {
	for _, key := range []string{"a", "key", "\x00\xff", string(make([]byte, 1000))} {
		pk := encodeKey(keyhash.Sum([]byte(key)), []byte(key))
		if got, want := binary.BigEndian.Uint32(pk), keyhash.Sum([]byte(key)); got != want {
			t.Errorf("encodeKey(%q) hash prefix = %#08x, want %#08x", key, got, want)
		}
		got, err := decodeKey(pk)
		if err != nil || string(got) != key {
			t.Errorf("decodeKey(encodeKey(%q)) = %q, %v", key, got, err)
		}
	}
	for _, pk := range [][]byte{nil, {1, 2, 3, 4}} {
		if _, err := decodeKey(pk); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeKey(%x) error = %v, want ErrCorrupt", pk, err)
		}
	}
}

func TestEncodeValueLayout(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
		want []byte
	}{
		{"live", live(0x0102030405060708, "hi"), []byte{1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 'h', 'i'}},
		{"empty value", live(1, ""), []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"tombstone", tomb(2), []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 2}},
		{"tombstone drops its value", Record{Timestamp: 2, Tombstone: true, Value: []byte("x")}, []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 2}},
		{"negative timestamp", live(-1, ""), []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"expiring", Record{Timestamp: 3, Value: []byte("v"), ExpiresAt: 0x0a0b}, []byte{1, 2, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b, 'v'}},
		{"tombstone drops its expiry", Record{Timestamp: 2, Tombstone: true, ExpiresAt: 9}, []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := encodeValue(tt.rec); !bytes.Equal(got, tt.want) {
				t.Errorf("encodeValue(%v) = %x, want %x", tt.rec, got, tt.want)
			}
		})
	}
}

func TestValueRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		rec  Record
	}{
		{"live", live(1700000000000000, "hello")},
		{"empty value", live(5, "")},
		{"binary value", live(5, "\x00\x01\xff")},
		{"large value", Record{Timestamp: 7, Value: bytes.Repeat([]byte("v"), 1<<20)}},
		{"tombstone", tomb(1700000000000000)},
		{"zero timestamp", live(0, "z")},
		{"negative timestamp", live(-12345, "n")},
		{"max timestamp", tomb(math.MaxInt64)},
		{"min timestamp", live(math.MinInt64, "m")},
		{"expiring", Record{Timestamp: 5, Value: []byte("e"), ExpiresAt: 1800000000000000}},
		{"expiring, empty value", Record{Timestamp: 5, ExpiresAt: 6}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeValue(encodeValue(tt.rec))
			if err != nil {
				t.Fatalf("decodeValue(encodeValue(%v)): %v", tt.rec, err)
			}
			if !sameRecord(got, tt.rec) {
				t.Errorf("round trip of %v gave %v", tt.rec, got)
			}
		})
	}
}

func TestDecodeValueCorrupt(t *testing.T) {
	tests := []struct {
		name string
		v    []byte
	}{
		{"nil", nil},
		{"empty", []byte{}},
		{"version only", []byte{1}},
		{"one byte short of a header", []byte{1, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"version 0", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"version 2", []byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 1, 'v'}},
		{"unknown flag", []byte{1, 4, 0, 0, 0, 0, 0, 0, 0, 1}},
		{"tombstone with a value", []byte{1, 1, 0, 0, 0, 0, 0, 0, 0, 1, 'v'}},
		{"expiry flag without an expiry", []byte{1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 'v'}},
		{"expiry of 0", []byte{1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"tombstone with an expiry", []byte{1, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, err := decodeValue(tt.v)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("decodeValue(%x) = %v, %v; want an error wrapping ErrCorrupt", tt.v, rec, err)
			}
		})
	}
}

// TestValuesWrittenBeforeExpiriesStillRead decodes values in the layout
// stores wrote before records could expire (flags bit 1 unknown then):
// they read as they did, with no expiry, and encode to the same bytes.
func TestValuesWrittenBeforeExpiriesStillRead(t *testing.T) {
	for _, tt := range []struct {
		v    []byte
		want Record
	}{
		{[]byte{1, 0, 0, 6, 0x0a, 0x5f, 0x3b, 0x2c, 0x10, 0x00, 'o', 'l', 'd'}, Record{Timestamp: 0x00060a5f3b2c1000, Value: []byte("old")}},
		{[]byte{1, 1, 0, 6, 0x0a, 0x5f, 0x3b, 0x2c, 0x10, 0x00}, Record{Timestamp: 0x00060a5f3b2c1000, Tombstone: true}},
	} {
		got, err := decodeValue(tt.v)
		if err != nil || !sameRecord(got, tt.want) || got.ExpiresAt != 0 {
			t.Errorf("decodeValue(%x) = %+v, %v; want %+v", tt.v, got, err, tt.want)
		}
		if again := encodeValue(got); !bytes.Equal(again, tt.v) {
			t.Errorf("encodeValue(%+v) = %x, want the old bytes %x", got, again, tt.v)
		}
	}
}

func FuzzDecodeValue(f *testing.F) {
	f.Add(encodeValue(Record{Timestamp: 4, Value: []byte("x"), ExpiresAt: 7}))
	f.Add(encodeValue(live(1, "hello")))
	f.Add(encodeValue(tomb(2)))
	f.Add(encodeValue(live(-1, "")))
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, v []byte) {
		rec, err := decodeValue(v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeValue(%x) error %v does not wrap ErrCorrupt", v, err)
			}
			return
		}
		// A value that decodes is in the one canonical encoding.
		if got := encodeValue(rec); !bytes.Equal(got, v) {
			t.Fatalf("encodeValue(decodeValue(%x)) = %x", v, got)
		}
	})
}
