package localcluster

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/tlsconf"
)

// readAll returns the content of the files of f, by path.
func readAll(t *testing.T, f tlsconf.Files) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, p := range []string{f.CA, f.CAKey, f.Cert, f.Key} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = b
	}
	return out
}

// leaf returns the certificate of f, checked against f's CA.
func leaf(t *testing.T, f tlsconf.Files) *tlsconf.Reloader {
	t.Helper()
	r, err := tlsconf.Load(f.CA, f.Cert, f.Key)
	if err != nil {
		t.Fatalf("the files do not load: %v", err)
	}
	return r
}

func TestCertificatesAreMadeOnceThenReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	now := time.Now()
	f, made, err := certificates(dir, []string{"127.0.0.1", "node1.example"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(made, "new CA") {
		t.Errorf("first run: %q, want a new CA", made)
	}
	for _, h := range []string{"127.0.0.1", "node1.example", "localhost", "::1"} {
		if err := leaf(t, f).Certificate().Leaf.VerifyHostname(h); err != nil {
			t.Errorf("the certificate does not name %s: %v", h, err)
		}
	}
	first := readAll(t, f)

	tests := []struct {
		name    string
		hosts   []string
		now     time.Time
		newCert bool // a new certificate from the same CA
	}{
		{"same hosts: everything reused", []string{"127.0.0.1", "node1.example"}, now, false},
		{"fewer hosts: everything reused", []string{"127.0.0.1"}, now, false},
		{"a new host: a new certificate", []string{"127.0.0.1", "node2.example"}, now, true},
		{"about to expire: a new certificate", []string{"127.0.0.1"}, now.Add(tlsconf.CertValidity - 24*time.Hour), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := readAll(t, f)
			_, made, err := certificates(dir, tt.hosts, tt.now)
			if err != nil {
				t.Fatal(err)
			}
			after := readAll(t, f)
			for _, p := range []string{f.CA, f.CAKey} {
				if !bytes.Equal(after[p], first[p]) {
					t.Errorf("%s changed: the CA must survive every run", filepath.Base(p))
				}
			}
			changed := !bytes.Equal(after[f.Cert], before[f.Cert]) || !bytes.Equal(after[f.Key], before[f.Key])
			if changed != tt.newCert {
				t.Errorf("certificate changed = %v, want %v (%s)", changed, tt.newCert, made)
			}
			r := leaf(t, f)
			for _, h := range append(tt.hosts, "localhost") {
				if err := r.Certificate().Leaf.VerifyHostname(h); err != nil {
					t.Errorf("the certificate does not name %s: %v", h, err)
				}
			}
			if fi, err := os.Stat(f.Key); err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("key mode: %v %v, want 0600", fi.Mode(), err)
			}
		})
	}
}

func TestCertificatesWithoutTheCAAreRefused(t *testing.T) {
	dir := t.TempDir()
	f, _, err := certificates(dir, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(f.CAKey); err != nil {
		t.Fatal(err)
	}
	if _, _, err := certificates(dir, nil, time.Now()); err == nil || !strings.Contains(err.Error(), "remove the directory") {
		t.Fatalf("a directory without the CA key: %v, want an error that says to remove it", err)
	}
}

func TestCertificatesReplaceABrokenCertificate(t *testing.T) {
	dir := t.TempDir()
	f, _, err := certificates(dir, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.Cert, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := certificates(dir, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	leaf(t, f)
}

const threeNodes = `# three nodes
active_deployment: d
deployments:
    d:
        buckets:
            b1:
                n1: [127.0.0.1, 5901, 4901]
            b2:
                n2: [node2.example, 5902, 4902]
`

func TestAddTLSSection(t *testing.T) {
	f := tlsconf.FilesIn("/var/tako: with a colon/tls")
	tests := []struct {
		name, src string
		ok        bool
	}{
		{"a plain file", threeNodes, true},
		{"no newline at the end", strings.TrimSuffix(threeNodes, "\n"), true},
		{"a document start", "---\n" + threeNodes, true},
		{"an explicit document end", threeNodes + "...\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := addTLSSection([]byte(tt.src), f)
			if !tt.ok {
				if err == nil {
					t.Fatalf("no error; the result:\n%s", out)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(out, []byte(tt.src)) {
				t.Errorf("the original is not kept as it was:\n%s", out)
			}
			cfg, err := config.Parse(out)
			if err != nil {
				t.Fatal(err)
			}
			if want := (config.TLSFiles{CA: f.CA, Cert: f.Cert, Key: f.Key}); !cfg.TLS.Equal(&want) {
				t.Errorf("tls section %+v, want %+v", cfg.TLS, want)
			}
		})
	}
}

func TestSetUpTLSWritesACopyWithATLSSection(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "three.yaml")
	if err := os.WriteFile(path, []byte(threeNodes), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	varDir := filepath.Join(dir, "var")
	s, err := setUpTLS(path, cfg, varDir)
	if err != nil {
		t.Fatal(err)
	}
	wantDir := filepath.Join(varDir, TLSDirName)
	if s.dir != wantDir || s.configPath != filepath.Join(wantDir, "three.yaml") || s.caFile != filepath.Join(wantDir, "ca.pem") {
		t.Errorf("dir %s, config %s, CA %s; want them in %s", s.dir, s.configPath, s.caFile, wantDir)
	}
	if s.cfg.TLS == nil || !filepath.IsAbs(s.cfg.TLS.Cert) {
		t.Fatalf("the copy's tls section: %+v, want absolute paths", s.cfg.TLS)
	}
	if src, _ := os.ReadFile(path); string(src) != threeNodes {
		t.Errorf("the original file changed:\n%s", src)
	}
	r := leaf(t, tlsconf.FilesIn(wantDir))
	if err := r.Certificate().Leaf.VerifyHostname("node2.example"); err != nil {
		t.Errorf("the certificate does not name the configuration's host: %v", err)
	}
	if s.client == nil || s.client.RootCAs == nil {
		t.Error("no client configuration trusting the CA")
	}

	// A configuration with a tls section of its own runs with its files.
	again, err := setUpTLS(s.configPath, s.cfg, filepath.Join(dir, "other"))
	if err != nil {
		t.Fatal(err)
	}
	if again.dir != "" || again.configPath != s.configPath || again.caFile != s.caFile {
		t.Errorf("a file with a tls section: dir %q, config %s, CA %s; want its own files", again.dir, again.configPath, again.caFile)
	}
	if _, err := os.Stat(filepath.Join(dir, "other")); err == nil {
		t.Error("made files for a configuration that has its own")
	}
}
