package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"

	"testing"

	"github.com/takodb/tako/internal/httpapi"
	"github.com/takodb/tako/internal/store"
)

// TestASnapshotIsAStoreWithEveryAcknowledgedWrite: POST /snapshot makes a
// copy of the node's store, with its TAKO-OWNED, that opens as a store
// and holds every write acknowledged before; a bad or existing directory
// is a 400 and makes nothing.
func TestASnapshotIsAStoreWithEveryAcknowledgedWrite(t *testing.T) {
	c := startCluster(t, [][]string{{"n1"}}, 1, "")
	n := c.nodes["n1"]
	ctx := context.Background()
	for i := range 100 {
		if _, err := n.Put(ctx, []byte(fmt.Sprintf("k%d", i)), []byte("v"), 0, httpapi.Expiry{}); err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + n.HTTPAddr().String()
	post := func(dir string) (int, string) {
		resp, err := http.Post(base+"/snapshot?dir="+url.QueryEscape(dir), "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	dir := filepath.Join(t.TempDir(), "snap")
	status, body := post(dir)
	if status != http.StatusOK {
		t.Fatalf("POST /snapshot: %d %s", status, body)
	}
	var res httpapi.SnapshotResult
	if err := json.Unmarshal([]byte(body), &res); err != nil || res.Node != "n1" || res.Dir != dir || res.Keys != 100 {
		t.Fatalf("the answer %q: %+v, %v", body, res, err)
	}
	for _, bad := range []string{dir, "relative/dir", ""} {
		if status, body := post(bad); status != http.StatusBadRequest {
			t.Errorf("POST /snapshot?dir=%q: %d %s, want 400", bad, status, body)
		}
	}
	if resp, err := http.Get(base + "/snapshot?dir=" + url.QueryEscape(dir+"2")); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET /snapshot: %v %v, want 405", resp.StatusCode, err)
	}
	s, err := store.Open(dir, store.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("the snapshot does not open: %v", err)
	}
	defer s.Close()
	for i := range 100 {
		if rec, err := s.Get(ctx, []byte(fmt.Sprintf("k%d", i))); err != nil || string(rec.Value) != "v" {
			t.Fatalf("k%d in the snapshot: %+v %v", i, rec, err)
		}
	}
	if _, err := readFile(n.fs, filepath.Join(dir, ownershipFile)); err != nil {
		t.Errorf("the snapshot has no %s: %v", ownershipFile, err)
	}
}
