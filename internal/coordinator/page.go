package coordinator

import (
	_ "embed"
	"net/http"
	"strconv"
)

// statusPage is the page GET / answers: it fetches /status every 2 s and
// draws it.
//
//go:embed page/index.html
var statusPage []byte

// servePage answers GET / with the status page.
func servePage(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(statusPage)))
	h.Set("Cache-Control", "no-cache")
	_, _ = w.Write(statusPage)
}
