package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Validity of what WriteFiles makes.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 365 * 24 * time.Hour
)

// DefaultHosts are the names every certificate that WriteFiles makes
// holds, besides the hosts it is given.
var DefaultHosts = []string{"localhost", "127.0.0.1", "::1"}

// CA is a certificate authority that signs certificates.
type CA struct {
	// Cert is the CA's certificate.
	Cert *x509.Certificate
	// Key is the CA's private key.
	Key *ecdsa.PrivateKey
}

// NewCA makes a self-signed CA (ECDSA P-256) valid for validity from now.
func NewCA(name string, validity time.Duration) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tls: generating the CA key: %w", err)
	}
	tmpl, err := template(name, validity)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tls: signing the CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tls: parsing the CA certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// template returns a certificate template with a random serial number,
// valid from a minute ago (clock skew) for validity.
func template(name string, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tls: choosing a serial number: %w", err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"Tako"}, CommonName: name},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
	}, nil
}

// Issue makes a key (ECDSA P-256) and a certificate for it, signed by ca,
// valid for validity, for both server and client authentication, naming
// hosts (host names and IP addresses). It returns both in PEM.
func (ca *CA) Issue(hosts []string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: generating a key: %w", err)
	}
	tmpl, err := template("tako", validity)
	if err != nil {
		return nil, nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.BasicConstraintsValid = true
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: signing the certificate: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// CertPEM returns the CA's certificate in PEM.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw})
}

// KeyPEM returns the CA's key in PEM (PKCS #8).
func (ca *CA) KeyPEM() ([]byte, error) { return encodeKey(ca.Key) }

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("tls: encoding a key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// Files are the paths of the files WriteFiles writes.
type Files struct {
	CA, CAKey, Cert, Key string
}

// FilesIn returns the paths WriteFiles uses in dir: ca.pem, ca-key.pem,
// tako.pem and tako-key.pem.
func FilesIn(dir string) Files {
	return Files{
		CA:    filepath.Join(dir, "ca.pem"),
		CAKey: filepath.Join(dir, "ca-key.pem"),
		Cert:  filepath.Join(dir, "tako.pem"),
		Key:   filepath.Join(dir, "tako-key.pem"),
	}
}

// WriteFiles makes a new CA (valid CAValidity) and a certificate it signed
// (valid CertValidity, for server and client use, naming hosts and
// DefaultHosts) and writes them to FilesIn(dir), creating dir if needed.
// Keys are written with mode 0600, certificates 0644. It writes nothing if
// any of the files exists.
func WriteFiles(dir string, hosts []string) (Files, error) {
	f := FilesIn(dir)
	for _, p := range []string{f.CA, f.CAKey, f.Cert, f.Key} {
		if _, err := os.Lstat(p); err == nil {
			return f, fmt.Errorf("%s exists: not overwriting it (remove it, or choose another directory)", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return f, fmt.Errorf("tls: %w", err)
		}
	}
	ca, err := NewCA("Tako CA", CAValidity)
	if err != nil {
		return f, err
	}
	caKey, err := ca.KeyPEM()
	if err != nil {
		return f, err
	}
	names := slices.Clone(hosts)
	for _, h := range DefaultHosts {
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	cert, key, err := ca.Issue(names, CertValidity)
	if err != nil {
		return f, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return f, fmt.Errorf("tls: %w", err)
	}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{{f.CAKey, caKey, 0o600}, {f.Key, key, 0o600}, {f.CA, ca.CertPEM(), 0o644}, {f.Cert, cert, 0o644}} {
		if err := writeNew(w.path, w.data, w.mode); err != nil {
			return f, err
		}
	}
	return f, nil
}

// writeNew writes data to a new file at path, failing if it exists.
func writeNew(path string, data []byte, mode os.FileMode) error {
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if _, err := file.Write(data); err != nil {
		file.Close()
		return fmt.Errorf("tls: writing %s: %w", path, err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("tls: writing %s: %w", path, err)
	}
	return nil
}

// LoadCA reads a CA that WriteFiles wrote: its certificate and its key
// (PEM), to issue more certificates with it.
func LoadCA(certFile, keyFile string) (*CA, error) {
	cert, err := readPEM(certFile, "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(cert)
	if err != nil {
		return nil, fmt.Errorf("tls: parsing %s: %w", certFile, err)
	}
	keyDER, err := readPEM(keyFile, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(keyDER)
	if err != nil {
		return nil, fmt.Errorf("tls: parsing %s: %w", keyFile, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("tls: %s: not an ECDSA key", keyFile)
	}
	return &CA{Cert: c, Key: key}, nil
}

// readPEM returns the bytes of the first PEM block of type typ in the file
// at path.
func readPEM(path, typ string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("tls: %s holds no PEM %s", path, typ)
		}
		if b.Type == typ {
			return b.Bytes, nil
		}
	}
}
