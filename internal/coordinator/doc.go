// Package coordinator is Tako's one point of configuration: the Server that
// a tako-coordinator runs to serve the configuration file over HTTP, and the
// Watcher that nodes and proxies run to follow it. Nodes and proxies never
// depend on a coordinator being up: the Watcher caches the newest
// configuration it has seen and starts from that cache.
//
// # Epochs
//
// Every configuration a Server serves has an epoch, an int64 that in
// practice is microseconds since the Unix epoch. Epochs only ever grow, and
// everyone who sees several configurations adopts the one with the highest
// epoch. A Server compares configurations by the SHA-256 of their canonical
// JSON (config.Config.MarshalJSON), so comments, layout and spelled-out
// defaults never make a new epoch:
//
//   - on start, and on Reload, a file whose canonical JSON is the one the
//     Server last numbered keeps its epoch, across reloads and restarts;
//   - a changed file gets max(previous epoch + 1, the wall clock in
//     microseconds);
//   - an invalid file is logged with the reason (key and deployment) and
//     changes nothing: the last good configuration keeps being served.
//
// The epoch state lives in StateDir/epoch.json, written atomically (a
// temporary file, fsync, rename, fsync of the directory):
//
//	{"epoch":1767225600000000,"sha256":"<hex SHA-256 of the served canonical JSON>"}
//
// A follower that adopted the master's configuration also records the hash
// of its own file as it last read it and the adopted configuration itself,
// so that a restart with that same (stale) file goes on serving the adopted
// configuration at the adopted epoch instead of numbering the stale file
// anew:
//
//	{"epoch":N,"sha256":"<served>","file_sha256":"<own file>","configuration":{...}}
//
// # HTTP
//
//	GET /configuration                200, the canonical JSON, Content-Type: application/json,
//	                                  X-Timestamp: EPOCH
//	GET /configuration?since=E        200 as above if EPOCH > E, else 304 with X-Timestamp
//	GET /configuration?since=E&wait=D a long-poll: 200 as soon as EPOCH > E, at once if it
//	                                  already is; 304 with X-Timestamp when D (a Go duration,
//	                                  capped at 60s) ends first or the server shuts down
//	GET /health                       200 "ok"
//	GET /metrics                      Prometheus text format
//	GET /migration                    how far every node's repair is under the served epoch, JSON
//	GET /status                       the cluster as the coordinator sees it, JSON (Status)
//	GET /                             the status page: an HTML page that draws GET /status
//	                                  every 2 s (the ring, the nodes and their state)
//
// A malformed since or wait gets 400 with a one-line reason; other paths get
// 404. GET /status answers from the last scrape of every node's /metrics,
// which Run repeats every StatusInterval (2 s): a node whose /metrics does
// not answer 200 within 1 s is "down", one without an HTTP port "unknown".
// Waiting long-polls cost a goroutine each and nothing else: they all wait
// on one channel that is closed whenever a new configuration is adopted.
//
// # Several coordinators
//
// When the configuration names a master_coordinator, every other coordinator
// follows it: it long-polls the master's /configuration and adopts the
// master's configuration and epoch whenever the master's epoch is higher than
// its own, so editing the master's file is enough. Until then it serves its
// own file, and a local Reload of that file still works; the higher epoch
// wins.
//
// # Watcher
//
// A Watcher asks every coordinator it knows, the -c addresses and every
// coordinator named by its current configuration, with one long-poll loop
// each, plus a plain poll of all of them every PollInterval as a fallback. It
// adopts any valid configuration with a higher epoch than its own, writes it
// to CacheDir/configuration.json atomically before announcing it, and
// ignores (with an Error log) one that does not validate:
//
//	{"epoch":1767225600000000,"configuration":{...canonical JSON...}}
package coordinator
