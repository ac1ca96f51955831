package buildinfo

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	if Version() == "" {
		t.Fatal("empty version")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector("tako-node"))
	want := `# HELP tako_build_info Always 1; the labels say which build of Tako this process runs.
# TYPE tako_build_info gauge
tako_build_info{program="tako-node",version="` + Version() + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tako_build_info"); err != nil {
		t.Fatal(err)
	}
}
