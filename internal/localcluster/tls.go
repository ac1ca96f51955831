package localcluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/takodb/tako/internal/config"
	"github.com/takodb/tako/internal/tlsconf"
)

// TLSDirName is the directory under Options.VarDir where Run keeps what a
// cluster with TLS on needs when its configuration has no tls section: the
// files of tlsconf.FilesIn (the CA, its key, the certificate every process
// presents and its key) and a copy of the configuration with a tls section
// that names them, under the configuration file's own name.
const TLSDirName = "tls"

// renewBefore is how long before it expires a certificate that Run made is
// replaced by a new one from the same CA.
const renewBefore = 7 * 24 * time.Hour

// tlsSetup is what Run needs to run a cluster with TLS on.
type tlsSetup struct {
	// configPath is the configuration the processes run with; it has a
	// tls section. cfg is its parsed content.
	configPath string
	cfg        *config.Config
	// caFile is the absolute path of the CA certificate that HTTPS clients
	// verify the processes with.
	caFile string
	// dir is where Run made the files, "" when the configuration named
	// its own.
	dir string
	// made says what Run did with the files in dir, for the user.
	made string
	// client verifies the processes' HTTPS with the CA.
	client *tls.Config
}

// setUpTLS returns how to run the cluster of the configuration at path
// (parsed as cfg) with TLS on. A configuration with a tls section runs with
// its files. Otherwise setUpTLS makes a CA and a certificate naming every
// host of the configuration in varDir/tls, or reuses those it made there
// before (a restart keeps the same CA, so clients keep trusting it), and
// writes the configuration with a tls section naming them to
// varDir/tls/NAME, NAME being the file's name.
func setUpTLS(path string, cfg *config.Config, varDir string) (*tlsSetup, error) {
	s := &tlsSetup{configPath: path, cfg: cfg}
	if cfg.TLS == nil {
		dir, err := filepath.Abs(filepath.Join(varDir, TLSDirName))
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		files, made, err := certificates(dir, hosts(cfg), time.Now())
		if err != nil {
			return nil, fmt.Errorf("making the certificates in %s: %w", dir, err)
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading the configuration: %w", err)
		}
		withTLS, err := addTLSSection(src, files)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		s.configPath = filepath.Join(dir, filepath.Base(path))
		if abs, err := filepath.Abs(path); err == nil && abs == s.configPath {
			return nil, fmt.Errorf("%s: the configuration is in %s, where tako-cluster writes its copy with a tls section: move it", path, dir)
		}
		if err := os.WriteFile(s.configPath, withTLS, 0o600); err != nil {
			return nil, fmt.Errorf("writing the configuration with a tls section: %w", err)
		}
		if s.cfg, err = config.Load(s.configPath); err != nil {
			return nil, err
		}
		s.dir, s.made = dir, made
	}
	ca, err := filepath.Abs(s.cfg.TLS.CA)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	s.caFile = ca
	if s.client, err = tlsconf.CAClientConfig(ca); err != nil {
		return nil, err
	}
	return s, nil
}

// hosts returns every host that the coordinators and the nodes of every
// deployment of cfg serve on, once each, in file order.
func hosts(cfg *config.Config) []string {
	var out []string
	add := func(h string) {
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	for _, co := range cfg.Coordinators {
		add(co.Host)
	}
	names := make([]string, 0, len(cfg.Deployments))
	for name := range cfg.Deployments {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		for _, b := range cfg.Deployments[name].Buckets {
			for _, n := range b.Nodes {
				add(n.Host)
			}
		}
	}
	return out
}

// certificates makes sure dir holds a CA and a certificate it signed that
// names hosts and tlsconf.DefaultHosts and is valid beyond renewBefore from
// now. It makes them all when dir holds none of the files; it keeps a CA it
// finds, and issues a new certificate with it when the one in dir is
// missing, does not load, names too few hosts or is about to expire. It
// returns the files and what it did, for the user.
func certificates(dir string, hosts []string, now time.Time) (tlsconf.Files, string, error) {
	f := tlsconf.FilesIn(dir)
	present := map[string]bool{}
	for _, p := range []string{f.CA, f.CAKey, f.Cert, f.Key} {
		_, err := os.Lstat(p)
		switch {
		case err == nil:
			present[p] = true
		case !errors.Is(err, fs.ErrNotExist):
			return f, "", err
		}
	}
	if len(present) == 0 {
		if _, err := tlsconf.WriteFiles(dir, hosts); err != nil {
			return f, "", err
		}
		return f, "made a new CA and a certificate", nil
	}
	if !present[f.CA] || !present[f.CAKey] {
		return f, "", fmt.Errorf("%s holds some of the files but not the CA (%s and %s): remove the directory to make new ones",
			dir, filepath.Base(f.CA), filepath.Base(f.CAKey))
	}
	ca, err := tlsconf.LoadCA(f.CA, f.CAKey)
	if err != nil {
		return f, "", err
	}
	names := slices.Clone(hosts)
	for _, h := range tlsconf.DefaultHosts {
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	if present[f.Cert] && present[f.Key] && usable(f, names, now) {
		return f, "reused the CA and the certificate made before", nil
	}
	cert, key, err := ca.Issue(names, tlsconf.CertValidity)
	if err != nil {
		return f, "", err
	}
	if err := replaceFile(f.Key, key, 0o600); err != nil {
		return f, "", err
	}
	if err := replaceFile(f.Cert, cert, 0o600); err != nil {
		return f, "", err
	}
	return f, "reused the CA made before, with a new certificate", nil
}

// usable reports whether the certificate of f loads with its key, chains
// to f's CA, names every host of names and stays valid beyond renewBefore
// from now.
func usable(f tlsconf.Files, names []string, now time.Time) bool {
	r, err := tlsconf.Load(f.CA, f.Cert, f.Key)
	if err != nil {
		return false
	}
	leaf := r.Certificate().Leaf
	if leaf == nil || now.Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	for _, h := range names {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// replaceFile writes data to path through a temporary file and a rename,
// so that path holds either the old or the new content.
func replaceFile(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("tls: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("tls: writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tls: writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return nil
}

// addTLSSection returns the configuration src with a tls section naming
// f's CA, certificate and key appended. It checks that the result parses
// and has that section, so that a file whose end does not take a new
// top-level key (an explicit end of document, say) fails here with the
// reason rather than in every process.
func addTLSSection(src []byte, f tlsconf.Files) ([]byte, error) {
	out := slices.Clone(src)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	out = fmt.Appendf(out, "\n# Added by tako-cluster: TLS on, with the certificates it made here.\ntls:\n  ca: %s\n  cert: %s\n  key: %s\n",
		strconv.Quote(f.CA), strconv.Quote(f.Cert), strconv.Quote(f.Key))
	cfg, err := config.Parse(out)
	if err != nil {
		return nil, fmt.Errorf("adding a tls section: %w", err)
	}
	if !cfg.TLS.Equal(&config.TLSFiles{CA: f.CA, Cert: f.Cert, Key: f.Key}) {
		return nil, errors.New("adding a tls section: the file does not take it at its end; add the section yourself (tako certs DIR makes the files)")
	}
	return out, nil
}
