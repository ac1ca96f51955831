package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseInterval(t *testing.T) {
	const day = 24 * time.Hour
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"1d 0:00:00", day},
		{"2d", 2 * day},
		{"0:30:00", 30 * time.Minute},
		{"1d 12:00:00", day + 12*time.Hour},
		{"1d12:00:00", day + 12*time.Hour},
		{"36:00:00", 36 * time.Hour},
		{"0:00:01.5", 1500 * time.Millisecond},
		{"1:2:3", time.Hour + 2*time.Minute + 3*time.Second},
		{"30s", 30 * time.Second},
		{"5m", 5 * time.Minute},
		{"2h", 2 * time.Hour},
		{"1d", day},
		{"1h30m", 90 * time.Minute},
		{"1d12h", day + 12*time.Hour},
		{"1d 12h", day + 12*time.Hour},
		{"1.5h", 90 * time.Minute},
		{"250ms", 250 * time.Millisecond},
		{"86400", day},
		{"1", time.Second},
		{"  2s  ", 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseInterval(tt.in)
			if err != nil {
				t.Fatalf("ParseInterval(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseInterval(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseIntervalInvalid(t *testing.T) {
	tests := []struct {
		in, why string
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"0", "greater than zero"},
		{"0s", "greater than zero"},
		{"0d", "greater than zero"},
		{"0:00:00", "greater than zero"},
		{"-5s", "not a duration"},
		{"+5s", "not a duration"},
		{"-1", "not a duration"},
		{"abc", "not a duration"},
		{"1.5", "not a duration"},
		{"5x", "not a duration"},
		{"1d 5", "not a duration"},
		{"1dd", "not a duration"},
		{"d", "not a duration"},
		{"2h1d", "not a duration"},
		{"0:60:00", "below 60"},
		{"0:00:60", "below 60"},
		{"1:00", "H:MM:SS"},
		{"1:00:00:00", "H:MM:SS"},
		{"1:000:00", "H:MM:SS"},
		{"a:00:00", "H:MM:SS"},
		{"0:00:00.", "H:MM:SS"},
		{"0:00:00.1234567890", "H:MM:SS"},
		{"99999999999999999999", "out of range"},
		{"9223372036854775807", "out of range"},
		{"999999999d", "out of range"},
		{"106751d 23:59:59", "out of range"},
		{"9999999999:00:00", "out of range"},
		{"1d 2562047h", "out of range"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseInterval(tt.in)
			if err == nil {
				t.Fatalf("ParseInterval(%q) = %v, want an error", tt.in, got)
			}
			if !strings.HasPrefix(err.Error(), "config: ") || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("ParseInterval(%q) error %q, want it to start with config: and say %q", tt.in, err, tt.why)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1", 1},
		{"1048576", 1 << 20},
		{"10B", 10},
		{"1KB", 1000},
		{"1kb", 1000},
		{"1KiB", 1024},
		{"1 KiB", 1024},
		{"64MiB", 64 << 20},
		{"64mib", 64 << 20},
		{"64 MB", 64_000_000},
		{"2GB", 2_000_000_000},
		{"2GiB", 2 << 30},
		{"1.5KiB", 1536},
		{"1.5 GB", 1_500_000_000},
		{"0.5KB", 500},
		{"1.0B", 1},
		{"8589934591GiB", 8589934591 << 30},
		{"9223372036854775807", 9223372036854775807},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err != nil {
				t.Fatalf("ParseSize(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseSize(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseSizeInvalid(t *testing.T) {
	tests := []struct {
		in, why string
	}{
		{"", "not a number"},
		{"0", "greater than zero"},
		{"0KiB", "greater than zero"},
		{"-1", "not a number"},
		{"+1", "not a number"},
		{"MiB", "not a number"},
		{"1.", "not a number"},
		{".5KB", "not a number"},
		{"1.2.3KB", "not a number"},
		{"12XB", `unknown unit "XB"`},
		{"1 TB", `unknown unit "TB"`},
		{"1 K", `unknown unit "K"`},
		{"1.5B", "whole number of bytes"},
		{"1.0001KB", "whole number of bytes"},
		{"0.1234567891GB", "too many decimals"},
		{"8589934592GiB", "out of range"},
		{"9223372036854775808", "out of range"},
		{"64 MiB extra", "unknown unit"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSize(tt.in)
			if err == nil {
				t.Fatalf("ParseSize(%q) = %d, want an error", tt.in, got)
			}
			if !strings.HasPrefix(err.Error(), "config: ") || !strings.Contains(err.Error(), tt.why) {
				t.Errorf("ParseSize(%q) error %q, want it to start with config: and say %q", tt.in, err, tt.why)
			}
		})
	}
}
