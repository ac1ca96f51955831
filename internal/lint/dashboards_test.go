package lint

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// metricDefinition matches where the code defines a metric: the Name of
// Opts, or prometheus.NewDesc's first argument.
var metricDefinition = regexp.MustCompile(`(?:Name:\s*|NewDesc\()"(tako_[a-z0-9_]+)"`)

// metricUse matches a Tako metric in a PromQL expression.
var metricUse = regexp.MustCompile(`tako_[a-z0-9_]+`)

// definedMetrics returns the names of every metric the code defines.
func definedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	defined := map[string]bool{}
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range metricDefinition.FindAllStringSubmatch(string(src), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return defined
}

// TestDashboardsUseDefinedMetrics: every Tako metric that the Grafana
// dashboard and the Prometheus alerts in deploy/ query is one the code
// defines (histograms by their _bucket, _sum and _count series), so a
// renamed metric cannot leave an empty panel or a silent alert behind.
func TestDashboardsUseDefinedMetrics(t *testing.T) {
	defined := definedMetrics(t)
	if len(defined) < 20 {
		t.Fatalf("found only %d metric definitions: the pattern no longer matches the code", len(defined))
	}
	dash, err := os.ReadFile("../../deploy/grafana/tako-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(dash, &d); err != nil {
		t.Fatalf("deploy/grafana/tako-dashboard.json: %v", err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	alerts, err := os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(alerts), "\n") {
		if e, ok := strings.CutPrefix(strings.TrimSpace(line), "expr:"); ok {
			exprs = append(exprs, e)
		}
	}
	used := 0
	for _, e := range exprs {
		for _, name := range metricUse.FindAllString(e, -1) {
			used++
			base := name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(name, suffix); ok && defined[b] {
					base = b
				}
			}
			if !defined[base] {
				t.Errorf("%s is queried in deploy/ (%s) but no code defines it", name, e)
			}
		}
	}
	if used < 20 {
		t.Errorf("the dashboard and alerts query only %d Tako metrics", used)
	}
}
