package record

import "testing"

func TestCompareOrdersExpiries(t *testing.T) {
	v := func(ts, exp int64) Record { return Record{Timestamp: ts, Value: []byte("v"), ExpiresAt: exp} }
	cases := []struct {
		name string
		a, b Record
		want int
	}{
		{"the newer timestamp wins whatever the expiry", v(2, 5), v(1, 0), 1},
		{"an older version without expiry loses to a newer one that expired", v(1, 0), v(2, 3), -1},
		{"on equal versions an expiry wins over none", v(1, 9), v(1, 0), 1},
		{"on equal versions the earlier expiry wins", v(1, 5), v(1, 9), 1},
		{"identical", v(1, 5), v(1, 5), 0},
		{"a tombstone wins over a value that expires at the same timestamp", Record{Timestamp: 1, Tombstone: true}, v(1, 5), 1},
		{"tombstones' expiries are not compared", Record{Timestamp: 1, Tombstone: true, ExpiresAt: 4}, Record{Timestamp: 1, Tombstone: true}, 0},
		{"the value bytes come before the expiry", Record{Timestamp: 1, Value: []byte("b")}, Record{Timestamp: 1, Value: []byte("a"), ExpiresAt: 2}, 1},
	}
	for _, c := range cases {
		if got := sign(Compare(c.a, c.b)); got != c.want {
			t.Errorf("%s: Compare(%+v, %+v) = %d, want %d", c.name, c.a, c.b, got, c.want)
		}
		if got := sign(Compare(c.b, c.a)); got != -c.want {
			t.Errorf("%s: Compare is not antisymmetric: Compare(b, a) = %d, want %d", c.name, got, -c.want)
		}
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

func TestExpiredAndGone(t *testing.T) {
	live := Record{Timestamp: 10, Value: []byte("v")}
	expiring := Record{Timestamp: 10, Value: []byte("v"), ExpiresAt: 100}
	tomb := Record{Timestamp: 10, Tombstone: true}
	for _, c := range []struct {
		name    string
		rec     Record
		now     int64
		expired bool
		since   int64
		sinceOK bool
	}{
		{"a value without expiry never expires", live, 1 << 60, false, 0, false},
		{"before its expiry", expiring, 99, false, 0, false},
		{"at its expiry", expiring, 100, true, 100, true},
		{"after its expiry", expiring, 5000, true, 100, true},
		{"a tombstone is gone since its timestamp, and never expired", tomb, 5000, false, 10, true},
	} {
		if got := c.rec.Expired(c.now); got != c.expired {
			t.Errorf("%s: Expired(%d) = %v, want %v", c.name, c.now, got, c.expired)
		}
		if got := c.rec.Gone(c.now); got != (c.expired || c.rec.Tombstone) {
			t.Errorf("%s: Gone(%d) = %v", c.name, c.now, got)
		}
		since, ok := c.rec.GoneSince(c.now)
		if since != c.since || ok != c.sinceOK {
			t.Errorf("%s: GoneSince(%d) = %d, %v, want %d, %v", c.name, c.now, since, ok, c.since, c.sinceOK)
		}
	}
}
