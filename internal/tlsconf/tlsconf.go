// Package tlsconf loads the certificates of a configuration's tls section
// and makes the TLS configurations of the binary protocol from them: mutual
// TLS, where a server requires a client certificate signed by the cluster's
// CA and a client verifies the server against the same CA. It also makes
// the certificates (a CA and a certificate for server and client use), for
// tako certs and for tests.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reloader holds the CA pool and this process's current certificate. The
// configurations it returns read the certificate at each handshake, so
// Reload changes what new connections present without touching the
// connections already established. It is safe for concurrent use.
type Reloader struct {
	certFile, keyFile string
	roots             *x509.CertPool
	cert              atomic.Pointer[tls.Certificate]
	// caNotAfter is when the CA that signed the current certificate
	// expires (the root of its verified chain).
	caNotAfter atomic.Pointer[time.Time]
}

// Load reads the CA certificate (PEM) at caFile and the key pair at
// certFile and keyFile. The CA is read once; Reload re-reads the key pair.
func Load(caFile, certFile, keyFile string) (*Reloader, error) {
	roots, err := loadPool(caFile)
	if err != nil {
		return nil, err
	}
	r := &Reloader{certFile: certFile, keyFile: keyFile, roots: roots}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	return r, nil
}

// loadPool reads every certificate of the PEM file at path into a pool.
func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: reading the CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tls: the CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// Reload reads the key pair again. On error the current certificate stays
// in use. A certificate that the CA did not sign, or that has expired, is
// refused, since every peer would refuse it.
func (r *Reloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls: loading the key pair %s, %s: %w", r.certFile, r.keyFile, err)
	}
	caNotAfter, err := r.check(&cert)
	if err != nil {
		return fmt.Errorf("tls: the certificate %s: %w", r.certFile, err)
	}
	r.cert.Store(&cert)
	r.caNotAfter.Store(&caNotAfter)
	return nil
}

// check verifies that cert chains to the CA, for some use, and returns
// when the CA at the root of the chain expires.
func (r *Reloader) check(cert *tls.Certificate) (caNotAfter time.Time, err error) {
	if cert.Leaf == nil {
		return time.Time{}, errors.New("no certificate")
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return time.Time{}, fmt.Errorf("an intermediate certificate: %w", err)
		}
		inter.AddCert(c)
	}
	chains, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: r.roots, Intermediates: inter,
		CurrentTime: time.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return time.Time{}, err
	}
	chain := chains[0]
	return chain[len(chain)-1].NotAfter, nil
}

// Expiry returns when the current certificate expires, and when the CA that
// signed it does: past either, peers refuse the process.
func (r *Reloader) Expiry() (cert, ca time.Time) {
	return r.cert.Load().Leaf.NotAfter, *r.caNotAfter.Load()
}

// Collectors returns the metrics of the expiry dates, for a process's
// registry: what an alert watches to renew certificates in time.
func (r *Reloader) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_tls_certificate_expiry_timestamp_seconds",
			Help: "When the certificate this process presents (the tls section's cert, as last loaded) expires, in seconds since the Unix epoch.",
		}, func() float64 { cert, _ := r.Expiry(); return float64(cert.Unix()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tako_tls_ca_expiry_timestamp_seconds",
			Help: "When the CA that signed this process's certificate expires, in seconds since the Unix epoch.",
		}, func() float64 { _, ca := r.Expiry(); return float64(ca.Unix()) }),
	}
}

// Certificate returns the certificate in use.
func (r *Reloader) Certificate() *tls.Certificate { return r.cert.Load() }

// ServerConfig returns the configuration of a server: it presents the
// current certificate and requires a client certificate that the CA
// signed, with TLS 1.3 at least.
func (r *Reloader) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cert.Load(), nil
		},
		ClientAuth: tls.RequireAndVerifyClientCert,
		ClientCAs:  r.roots,
	}
}

// ClientConfig returns the configuration of a client: it verifies the
// server's certificate against the CA (for the host it dials, which the
// certificate must name) and presents the current certificate as its own,
// with TLS 1.3 at least.
func (r *Reloader) ClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    r.roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return r.cert.Load(), nil
		},
	}
}

// HTTPServerConfig returns the configuration of an HTTPS server: it
// presents the current certificate, with TLS 1.2 at least, and asks for no
// client certificate, since HTTP clients authenticate with bearer tokens.
func (r *Reloader) HTTPServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.cert.Load(), nil
		},
	}
}

// HTTPClientConfig returns the configuration of an HTTPS client: it
// verifies the server's certificate against the CA, with TLS 1.2 at least,
// and presents the current certificate if a server asks for one.
func (r *Reloader) HTTPClientConfig() *tls.Config {
	c := r.ClientConfig()
	c.MinVersion = tls.VersionTLS12
	return c
}

// CAClientConfig returns the configuration of an HTTPS client that
// verifies servers against the CA certificates of the PEM file at path.
func CAClientConfig(path string) (*tls.Config, error) {
	pool, err := loadPool(path)
	if err != nil {
		return nil, err
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}, nil
}
