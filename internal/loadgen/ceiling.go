package loadgen

import (
	"io"
	"net/http"
	"sync"
)

// Ceiling is the reference that Tako's HTTP figures are read against: a map
// behind a mutex served over net/http, with no replication and no disk. It
// answers GET and POST on any path (POST stores the body, GET returns it or
// 404), so the load generator drives it as it drives a proxy. Nothing that
// serves HTTP from Go on the same machine does much better.
type Ceiling struct {
	mu sync.Mutex
	m  map[string][]byte
}

// ServeHTTP serves one request.
func (c *Ceiling) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.URL.Path
	switch r.Method {
	case http.MethodGet:
		c.mu.Lock()
		v, ok := c.m[key]
		c.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(v)
	case http.MethodPost, http.MethodPut:
		v, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.mu.Lock()
		if c.m == nil {
			c.m = map[string][]byte{}
		}
		c.m[key] = v
		c.mu.Unlock()
	default:
		http.Error(w, "GET or POST", http.StatusMethodNotAllowed)
	}
}
