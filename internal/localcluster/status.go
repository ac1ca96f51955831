package localcluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// childState is what the status loop last saw of a child.
type childState struct {
	up   bool
	keys int64 // tako_store_keys of a node; -1 when not known
	note string
}

// watchStatus shows the state of every child, asking them with hc, until
// ctx ends. On a terminal it redraws one line per process in place every
// interval (state and, for nodes, keys); on anything else (a file, a pipe, a
// test) it prints a line only when a process goes down or comes back, so
// logs stay readable.
func watchStatus(ctx context.Context, hc *http.Client, out io.Writer, live bool, children []*child, interval time.Duration) {
	prev := make([]childState, len(children))
	for i := range prev {
		prev[i] = childState{up: true, keys: -1}
	}
	drawn := 0
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := probeAll(hc, children)
		if live {
			if drawn > 0 {
				fmt.Fprintf(out, "\x1b[%dA", drawn) // back to the top of the block
			}
			fmt.Fprintf(out, "\x1b[2K%s  live status (every %s):\n", time.Now().Format("15:04:05"), interval)
			for i, c := range children {
				fmt.Fprintf(out, "\x1b[2K  %s\n", statusLine(c, cur[i]))
			}
			drawn = len(children) + 1
		} else {
			for i, c := range children {
				if cur[i].up != prev[i].up {
					fmt.Fprintf(out, "%s  %s\n", time.Now().Format("15:04:05"), statusLine(c, cur[i]))
				}
			}
		}
		prev = cur
	}
}

func statusLine(c *child, s childState) string {
	state := "up"
	if !s.up {
		state = "DOWN"
	}
	line := fmt.Sprintf("%-4s %-12s %-4s", c.id, c.role, state)
	if s.keys >= 0 {
		line += fmt.Sprintf("  %9d keys", s.keys)
	}
	if s.note != "" {
		line += "  " + s.note
	}
	if !s.up {
		line += "  (log: " + c.log + ")"
	}
	return line
}

// probeAll asks every child at once whether it serves, and a node for its
// number of keys.
func probeAll(hc *http.Client, children []*child) []childState {
	states := make([]childState, len(children))
	var wg sync.WaitGroup
	for i, c := range children {
		wg.Go(func() { states[i] = probe(hc, c) })
	}
	wg.Wait()
	return states
}

func probe(hc *http.Client, c *child) childState {
	s := childState{keys: -1}
	select {
	case <-c.done:
		s.note = "exited"
		return s
	default:
	}
	if c.health == "" { // a node without an HTTP port: it runs
		s.up = true
		return s
	}
	resp, err := hc.Get(c.health)
	if err != nil {
		return s
	}
	resp.Body.Close()
	s.up = resp.StatusCode == http.StatusOK
	if s.up && strings.HasPrefix(c.role, "node") {
		s.keys = scrapeKeys(hc, strings.TrimSuffix(c.health, "/health")+"/metrics")
	}
	return s
}

// scrapeKeys reads tako_store_keys from a node's /metrics; -1 on failure.
func scrapeKeys(hc *http.Client, url string) int64 {
	resp, err := hc.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "tako_store_keys "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int64(f)
			}
		}
	}
	return -1
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
