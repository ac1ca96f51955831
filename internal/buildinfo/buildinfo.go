// Package buildinfo tells which build of Tako a process runs: the module
// version, or the VCS revision for a development build.
package buildinfo

import (
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Version returns the module version of the running binary ("v1.2.3"),
// or for a development build "devel" and the first 12 digits of the VCS
// revision ("devel+3f2a9c1b0d4e"), with "-dirty" for uncommitted changes.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	v := "devel"
	var rev string
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev != "" {
		v += "+" + rev
	}
	if dirty {
		v += "-dirty"
	}
	return v
}

// Collector returns the metric tako_build_info{version, program}, always 1,
// for a process's registry.
func Collector(program string) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "tako_build_info",
		Help:        "Always 1; the labels say which build of Tako this process runs.",
		ConstLabels: prometheus.Labels{"version": Version(), "program": program},
	})
	g.Set(1)
	return g
}
