package coordinator

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// maxMetricsSize bounds the body of a node's /metrics that is read.
const maxMetricsSize = 8 << 20

// sample is one line of a Prometheus text exposition: its labels and value.
type sample struct {
	labels map[string]string
	value  float64
}

// metricSet is one scrape of a /metrics page: the samples of every metric,
// by metric name. Histograms and summaries are left out: nothing here
// reads them.
type metricSet map[string][]sample

// scrapeMetrics fetches url, a /metrics page in the Prometheus text format,
// and parses it. It gives up after timeout; an answer other than 200 is an
// error.
func scrapeMetrics(ctx context.Context, client *http.Client, url string, timeout time.Duration) (metricSet, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("asking %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := client.Do(req)
	if err != nil {
		// The error names the method and the URL already.
		return nil, fmt.Errorf("no answer: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s answered %s", url, resp.Status)
	}
	m, err := parseMetrics(io.LimitReader(resp.Body, maxMetricsSize))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", url, err)
	}
	return m, nil
}

// parseMetrics parses a Prometheus text exposition.
func parseMetrics(r io.Reader) (metricSet, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	out := make(metricSet, len(families))
	for name, f := range families {
		for _, m := range f.GetMetric() {
			var v float64
			switch {
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Untyped != nil:
				v = m.GetUntyped().GetValue()
			default:
				continue
			}
			labels := make(map[string]string, len(m.GetLabel()))
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[name] = append(out[name], sample{labels: labels, value: v})
		}
	}
	return out, nil
}

// value returns the value of the metric name's first sample, and whether
// there is one.
func (m metricSet) value(name string) (float64, bool) {
	s := m[name]
	if len(s) == 0 {
		return 0, false
	}
	return s[0].value, true
}

// sum returns the sum of the metric name's samples whose labels keep
// accepts (every sample when keep is nil).
func (m metricSet) sum(name string, keep func(labels map[string]string) bool) float64 {
	total := 0.0
	for _, s := range m[name] {
		if keep == nil || keep(s.labels) {
			total += s.value
		}
	}
	return total
}

// labelsWhere returns, sorted, the value of label of every sample of the
// metric name whose value is v.
func (m metricSet) labelsWhere(name, label string, v float64) []string {
	var out []string
	for _, s := range m[name] {
		if s.value == v {
			out = append(out, s.labels[label])
		}
	}
	slices.Sort(out)
	return out
}
