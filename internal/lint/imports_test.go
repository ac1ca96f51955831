// Package lint holds tests that keep the code base in shape: the arrows of
// which package may import which (STYLE.md), checked with go list.
package lint

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/takodb/tako/"

// allowed lists, for each package, the Tako packages it may import
// directly. A package missing here may import nothing of Tako's.
var allowed = map[string][]string{
	"cmd/tako-node":            {"internal/programs"},
	"cmd/tako-proxy":           {"internal/programs"},
	"cmd/tako-cluster":         {"internal/programs"},
	"cmd/tako-coordinator":     {"internal/programs"},
	"cmd/tako":                 {"internal/tako"},
	"internal/tako":            {"client", "internal/archive", "internal/auth", "internal/backup", "internal/cli", "internal/config", "internal/coordinator", "internal/httpapi", "internal/tlsconf", "internal/wire"},
	"internal/coordinator":     {"internal/auth", "internal/buildinfo", "internal/config", "internal/connlimit", "internal/httpserve", "internal/tlsconf"},
	"cmd/tako-bench":           {"client", "internal/cli", "internal/loadgen"},
	"internal/programs":        {"internal/cli", "internal/config", "internal/coordinator", "internal/node", "internal/private", "internal/proxy", "internal/localcluster"},
	"internal/cli":             {"internal/private"},
	"internal/localcluster":    {"internal/auth", "internal/config", "internal/tlsconf"},
	"internal/proxy":           {"client", "internal/auth", "internal/budget", "internal/buildinfo", "internal/config", "internal/connlimit", "internal/coordmetrics", "internal/httpapi", "internal/httpserve", "internal/tlsconf"},
	"internal/node":            {"internal/auth", "internal/budget", "internal/buildinfo", "internal/config", "internal/connlimit", "internal/coord", "internal/coordmetrics", "internal/gopool", "internal/health", "internal/hlc", "internal/httpapi", "internal/httpserve", "internal/keyhash", "internal/record", "internal/ring", "internal/store", "internal/tlsconf", "internal/wire"},
	"internal/wire":            {"internal/gopool", "internal/record"},
	"internal/coord":           {"internal/config", "internal/keyhash", "internal/record"},
	"internal/httpapi":         {"internal/auth", "internal/coord", "internal/record"},
	"internal/httpserve":       {"internal/config", "internal/connlimit"},
	"internal/sim":             {"client", "internal/config", "internal/history", "internal/node", "internal/record", "internal/simnet", "internal/wire"},
	"internal/sim/guest":       {"internal/sim"},
	"internal/testcluster":     {"internal/config", "internal/node", "internal/tlsconf"},
	"internal/testcoordinator": {"internal/coordinator", "internal/testcluster"},
	"internal/loadgen":         {"client"},
	"client":                   {"internal/auth", "internal/config", "internal/coord", "internal/coordinator", "internal/health", "internal/hlc", "internal/keyhash", "internal/record", "internal/tlsconf", "internal/wire"},
	"internal/config":          {"internal/auth", "internal/keyhash", "internal/ring"},
	"internal/ring":            {"internal/keyhash"},
	"internal/store":           {"internal/keyhash", "internal/record"},
	"internal/archive":         {"internal/keyhash", "internal/record"},
	"internal/backup":          {"internal/archive", "internal/config", "internal/keyhash", "internal/record", "internal/ring", "internal/wire"},
	// internal/auth, internal/keyhash, internal/hlc, internal/health,
	// internal/gopool, internal/buildinfo, internal/connlimit,
	// internal/tlsconf, internal/private, internal/budget, internal/record,
	// internal/coordmetrics, internal/simnet, internal/history:
	// no Tako package.
}

func TestImportArrows(t *testing.T) {
	out, err := exec.Command("go", "list", "-json=ImportPath,Imports", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	seen := 0
	for dec.More() {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		seen++
		name := strings.TrimPrefix(p.ImportPath, module)
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, module) {
				continue
			}
			dep := strings.TrimPrefix(imp, module)
			ok := false
			for _, a := range allowed[name] {
				ok = ok || a == dep
			}
			if !ok {
				t.Errorf("%s imports %s, which the layout does not allow (internal/lint/imports_test.go lists the arrows)", name, dep)
			}
		}
	}
	if seen < 10 {
		t.Fatalf("go list saw only %d packages", seen)
	}
}
