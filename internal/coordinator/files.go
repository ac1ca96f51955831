package coordinator

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/takodb/tako/internal/config"
)

const (
	// stateFile is the name of the Server's epoch state in its StateDir.
	stateFile = "epoch.json"
	// cacheFile is the name of the Watcher's cached configuration in its
	// CacheDir.
	cacheFile = "configuration.json"
)

// canonical returns the canonical JSON of cfg and the hex SHA-256 of it.
func canonical(cfg *config.Config) (body []byte, sum string, err error) {
	body, err = cfg.MarshalJSON()
	if err != nil {
		return nil, "", fmt.Errorf("coordinator: encoding the configuration: %w", err)
	}
	h := sha256.Sum256(body)
	return body, hex.EncodeToString(h[:]), nil
}

// epochState is the content of StateDir/epoch.json.
type epochState struct {
	// Epoch is the epoch of the served configuration.
	Epoch int64 `json:"epoch"`
	// SHA256 is the hex SHA-256 of the served configuration's canonical
	// JSON.
	SHA256 string `json:"sha256"`
	// FileSHA256 is the hex SHA-256 of the canonical JSON of the
	// coordinator's own file as it last read it, when that is not the
	// served configuration (a follower that adopted the master's); ""
	// means the same as SHA256.
	FileSHA256 string `json:"file_sha256,omitempty"`
	// Configuration is the served configuration when it is not the
	// coordinator's own file (a follower that adopted the master's).
	Configuration json.RawMessage `json:"configuration,omitempty"`
}

// errCorruptState is returned (wrapped) by readState for a state file that
// is not what writeState writes.
var errCorruptState = errors.New("coordinator: damaged epoch state")

// readState reads the epoch state in dir. It returns an error wrapping
// os.ErrNotExist when there is none, and one wrapping errCorruptState when
// it is damaged.
func readState(dir string) (epochState, error) {
	path := filepath.Join(dir, stateFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return epochState{}, fmt.Errorf("coordinator: reading the epoch state: %w", err)
	}
	var st epochState
	if err := json.Unmarshal(data, &st); err != nil {
		return epochState{}, fmt.Errorf("%w: %s: %w", errCorruptState, path, err)
	}
	if st.Epoch <= 0 || st.SHA256 == "" {
		return epochState{}, fmt.Errorf("%w: %s: no epoch or sha256", errCorruptState, path)
	}
	if st.FileSHA256 == "" {
		st.FileSHA256 = st.SHA256
	}
	return st, nil
}

// writeState writes st as the epoch state in dir, atomically.
func writeState(dir string, st epochState) error {
	if st.FileSHA256 == st.SHA256 {
		st.FileSHA256, st.Configuration = "", nil
	}
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("coordinator: encoding the epoch state: %w", err)
	}
	if err := writeFileAtomic(dir, stateFile, append(data, '\n')); err != nil {
		return fmt.Errorf("coordinator: writing the epoch state: %w", err)
	}
	return nil
}

// cached is the content of CacheDir/configuration.json.
type cached struct {
	Epoch         int64           `json:"epoch"`
	Configuration json.RawMessage `json:"configuration"`
}

// LoadCache reads the configuration that a Watcher cached in dir, and its
// epoch. When dir holds none, the error wraps os.ErrNotExist (errors.Is); a
// cache that cannot be read or does not hold a valid configuration gives an
// error naming the file.
func LoadCache(dir string) (*config.Config, int64, error) {
	path := filepath.Join(dir, cacheFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("coordinator: reading the cached configuration: %w", err)
	}
	var c cached
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, 0, fmt.Errorf("coordinator: reading the cached configuration %s: %w", path, err)
	}
	if c.Epoch <= 0 || len(c.Configuration) == 0 {
		return nil, 0, fmt.Errorf("coordinator: reading the cached configuration %s: no epoch or configuration", path)
	}
	cfg, err := config.Parse(c.Configuration)
	if err != nil {
		return nil, 0, fmt.Errorf("coordinator: the cached configuration %s: %w", path, err)
	}
	return cfg, c.Epoch, nil
}

// writeCache caches body, a canonical JSON configuration, with its epoch in
// dir, atomically.
func writeCache(dir string, body []byte, epoch int64) error {
	data, err := json.Marshal(cached{Epoch: epoch, Configuration: body})
	if err != nil {
		return fmt.Errorf("coordinator: encoding the cached configuration: %w", err)
	}
	if err := writeFileAtomic(dir, cacheFile, append(data, '\n')); err != nil {
		return fmt.Errorf("coordinator: caching the configuration: %w", err)
	}
	return nil
}

// writeFileAtomic replaces dir/name with data so that a crash leaves either
// the old or the new content: it writes a temporary file in dir, syncs it,
// renames it over name and syncs dir. It creates dir if need be. The file
// and a dir it creates are private to this user (0600, 0700): the
// configuration lists every host and the token hashes.
func writeFileAtomic(dir, name string, data []byte) (err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if err := d.Sync(); err != nil {
		_ = d.Close()
		return err
	}
	return d.Close()
}

// isNotExist reports whether err says that a file does not exist.
func isNotExist(err error) bool { return errors.Is(err, os.ErrNotExist) }
