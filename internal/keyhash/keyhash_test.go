package keyhash

import "testing"

// TestGolden pins the hash: a change here moves every key of every cluster.
// The expected values were computed independently (a few lines of Python).
func TestGolden(t *testing.T) {
	tests := []struct {
		key  string
		want uint32
	}{
		{"", 0xefd01f60},
		{"a", 0x82a2a958},
		{"hello", 0xe9c562c0},
		{"users/42", 0x3c4e7c73},
	}
	for _, tt := range tests {
		if got := Sum([]byte(tt.key)); got != tt.want {
			t.Errorf("Sum(%q) = %#08x, want %#08x", tt.key, got, tt.want)
		}
		if got := SumString(tt.key); got != tt.want {
			t.Errorf("SumString(%q) = %#08x, want %#08x", tt.key, got, tt.want)
		}
	}
}

func BenchmarkSum(b *testing.B) {
	key := []byte("users/1234567890/profile")
	for b.Loop() {
		Sum(key)
	}
}
