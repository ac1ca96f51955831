package tako

import (
	"context"
	"fmt"
	"math"
	"path/filepath"

	"github.com/takodb/tako/internal/tlsconf"
)

// runCerts is "tako certs DIR [HOST ...]": it makes a cluster CA and one
// certificate for every process, writes them into DIR, and prints the tls
// section that uses them.
func runCerts(ctx context.Context, r *runner, args []string) error {
	fs := r.commandFlags("certs", "DIR [HOST ...]", `
Makes the certificates for mutual TLS on the binary protocol and writes
them into DIR (created if needed):
  ca.pem, ca-key.pem    a new cluster CA (ECDSA P-256, valid 10 years)
  tako.pem, tako-key.pem a certificate it signed (valid 1 year) for every
                        node, proxy and Go client, as server and as client
The certificate names each HOST (host names or IP addresses, as the
configuration writes them) and localhost, 127.0.0.1 and ::1. Keys are
written with mode 0600. Existing files are never overwritten. Then it
prints the tls section to add to the configuration: copy ca.pem, tako.pem
and tako-key.pem to that path on every host, and keep ca-key.pem offline.

Example:
  tako certs /etc/tako/tls node1.example.com node2.example.com`)
	pos, err := r.parseCommand(fs, args, 1, math.MaxInt)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(pos[0])
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	files, err := tlsconf.WriteFiles(dir, pos[1:])
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	fmt.Fprintf(r.stdout, "wrote %s, %s, %s, %s\n\n# in the configuration (the same paths on every host)\ntls:\n  ca: %s\n  cert: %s\n  key: %s\n",
		files.CA, files.CAKey, files.Cert, files.Key, files.CA, files.Cert, files.Key)
	return nil
}
