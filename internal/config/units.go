package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseInterval parses a positive duration written as in the original Tako
// ("1d 0:00:00", "2d", "0:30:00", "1d 12:00:00": optional days, then an
// optional H:MM:SS whose seconds may have a fraction), as a Go duration that
// may start with a number of days ("30s", "5m", "2h", "1h30m", "1d", "1d12h",
// "1d 12h"), or as a bare number of seconds ("86400"). Surrounding spaces are
// ignored. A zero, negative or out-of-range duration is an error.
func ParseInterval(s string) (time.Duration, error) {
	d, err := parseInterval(s)
	if err != nil {
		return 0, fmt.Errorf("config: %w", err)
	}
	return d, nil
}

// parseInterval is ParseInterval with an error that has no package prefix, for
// use inside a Problem's message.
func parseInterval(s string) (time.Duration, error) {
	d, err := parseIntervalText(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: %w (want e.g. 30s, 5m, 2h, 1d or 1d 0:00:00)", s, err)
	}
	if d <= 0 {
		return 0, fmt.Errorf("invalid duration %q: must be greater than zero", s)
	}
	return d, nil
}

var errDurationRange = errors.New("out of range")

func parseIntervalText(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	if isDigits(s) {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) {
			return 0, errDurationRange
		}
		return time.Duration(n) * time.Second, nil
	}
	var total time.Duration
	rest := s
	if i := strings.IndexByte(s, 'd'); i > 0 && isDigits(s[:i]) {
		days, err := strconv.ParseInt(s[:i], 10, 64)
		if err != nil || days > math.MaxInt64/int64(24*time.Hour) {
			return 0, errDurationRange
		}
		total = time.Duration(days) * 24 * time.Hour
		rest = strings.TrimLeft(s[i+1:], " \t")
		if rest == "" {
			return total, nil
		}
	}
	var d time.Duration
	var err error
	if strings.Contains(rest, ":") {
		d, err = parseClock(rest)
	} else {
		if rest[0] < '0' || rest[0] > '9' {
			// No signs, no leading dots: time.ParseDuration would take "-5s".
			return 0, errors.New("not a duration")
		}
		d, err = time.ParseDuration(rest)
		if err != nil {
			return 0, errors.New("not a duration")
		}
	}
	if err != nil {
		return 0, err
	}
	if d > math.MaxInt64-total {
		return 0, errDurationRange
	}
	return total + d, nil
}

// parseClock parses H:MM:SS, where H is any number of digits, MM and SS are
// one or two digits below 60, and SS may have a fraction of up to nine digits.
func parseClock(s string) (time.Duration, error) {
	bad := errors.New("not H:MM:SS")
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return 0, bad
	}
	secs, frac, _ := strings.Cut(parts[2], ".")
	if !isDigits(parts[0]) || !isDigits(parts[1]) || !isDigits(secs) ||
		len(parts[1]) > 2 || len(secs) > 2 || len(frac) > 9 ||
		(frac != "" && !isDigits(frac)) || (strings.Contains(parts[2], ".") && frac == "") {
		return 0, bad
	}
	h, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || h > math.MaxInt64/int64(time.Hour)-1 {
		return 0, errDurationRange
	}
	m, _ := strconv.Atoi(parts[1])
	sec, _ := strconv.Atoi(secs)
	if m >= 60 || sec >= 60 {
		return 0, errors.New("minutes and seconds must be below 60")
	}
	var ns int64
	if frac != "" {
		ns, _ = strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
	}
	return time.Duration(h)*time.Hour + time.Duration(m)*time.Minute +
		time.Duration(sec)*time.Second + time.Duration(ns), nil
}

// sizeUnits maps the lower-cased size units to their number of bytes.
var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"kib": 1 << 10,
	"mb":  1000 * 1000,
	"mib": 1 << 20,
	"gb":  1000 * 1000 * 1000,
	"gib": 1 << 30,
}

// ParseSize parses a positive number of bytes: a bare integer ("1048576"), or
// a number, optionally with a fraction, followed by one of the units B, KB
// (1000 bytes), KiB (1024), MB, MiB, GB or GiB, in any case and optionally
// after a space ("64MiB", "1.5 GB"). The result must be a whole, positive
// number of bytes that fits in an int64.
func ParseSize(s string) (int64, error) {
	n, err := parseSize(s)
	if err != nil {
		return 0, fmt.Errorf("config: %w", err)
	}
	return n, nil
}

// parseSize is ParseSize with an error that has no package prefix.
func parseSize(s string) (int64, error) {
	n, err := parseSizeText(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("invalid size %q: %w (want e.g. 1048576, 512KiB or 64MiB)", s, err)
	}
	if n <= 0 {
		return 0, fmt.Errorf("invalid size %q: must be greater than zero", s)
	}
	return n, nil
}

func parseSizeText(s string) (int64, error) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(strings.TrimLeft(s[i:], " \t"))
	whole, frac, hasFrac := strings.Cut(num, ".")
	if !isDigits(whole) || (hasFrac && !isDigits(frac)) {
		return 0, errors.New("not a number")
	}
	mult, ok := sizeUnits[unit]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q", strings.TrimLeft(s[i:], " \t"))
	}
	w, err := strconv.ParseInt(whole, 10, 64)
	if err != nil || w > math.MaxInt64/mult {
		return 0, errors.New("out of range")
	}
	n := w * mult
	if hasFrac {
		frac = strings.TrimRight(frac, "0")
		if len(frac) > 9 {
			return 0, errors.New("too many decimals")
		}
		f, _ := strconv.ParseInt(frac, 10, 64) // "" parses as an error and 0
		scale := int64(math.Pow10(len(frac)))
		// f < scale <= 1e9 and mult <= 2^30, so f*mult cannot overflow.
		if f*mult%scale != 0 {
			return 0, errors.New("not a whole number of bytes")
		}
		extra := f * mult / scale
		if n > math.MaxInt64-extra {
			return 0, errors.New("out of range")
		}
		n += extra
	}
	return n, nil
}

// isDigits reports whether s is a non-empty string of ASCII digits.
func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
