package config

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// MarshalJSON returns the canonical JSON form of the configuration: every
// setting written out (defaults included), deployments, buckets, nodes and
// coordinators in the order of the file they came from, durations as Go
// duration strings and sizes in bytes. Parse reads it back to an equal
// Config, and two files that differ only in comments, layout or spelled-out
// defaults have the same canonical form: the coordinator serves it, and
// compares it to tell whether a reload changed anything.
func (c *Config) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	if c.MasterCoordinator != "" {
		writeKey(&b, "master_coordinator", true)
		writeString(&b, c.MasterCoordinator)
		b.WriteByte(',')
	}
	if len(c.Coordinators) > 0 {
		writeKey(&b, "coordinators", true)
		b.WriteByte('{')
		for i, co := range c.Coordinators {
			writeKey(&b, co.ID, i == 0)
			b.WriteByte('[')
			writeString(&b, co.Host)
			b.WriteByte(',')
			b.WriteString(strconv.Itoa(co.Port))
			b.WriteByte(']')
		}
		b.WriteString("},")
	}
	if len(c.AuthTokens) > 0 {
		writeKey(&b, "auth", true)
		b.WriteString(`{"tokens":{`)
		for i, tok := range c.AuthTokens {
			writeKey(&b, tok.Name, i == 0)
			b.WriteString(`{"sha256":`)
			writeString(&b, hex.EncodeToString(tok.Hash[:]))
			b.WriteString(`,"role":`)
			writeString(&b, tok.Role.String())
			b.WriteByte('}')
		}
		b.WriteString("}},")
	}
	if c.TLS != nil {
		writeKey(&b, "tls", true)
		b.WriteString(`{"ca":`)
		writeString(&b, c.TLS.CA)
		b.WriteString(`,"cert":`)
		writeString(&b, c.TLS.Cert)
		b.WriteString(`,"key":`)
		writeString(&b, c.TLS.Key)
		for _, role := range TLSRoles {
			if kp, ok := c.TLS.Roles[role]; ok {
				b.WriteByte(',')
				writeString(&b, role)
				b.WriteString(`:{"cert":`)
				writeString(&b, kp.Cert)
				b.WriteString(`,"key":`)
				writeString(&b, kp.Key)
				b.WriteByte('}')
			}
		}
		b.WriteString("},")
	}
	writeKey(&b, "active_deployment", true)
	writeString(&b, c.Active.Name)
	if c.Target != nil {
		writeKey(&b, "target_deployment", false)
		writeString(&b, c.Target.Name)
	}
	writeKey(&b, "deployments", false)
	b.WriteByte('{')
	for i, d := range c.deploymentsInOrder() {
		writeKey(&b, d.Name, i == 0)
		d.writeJSON(&b)
	}
	b.WriteString("}}")
	return b.Bytes(), nil
}

// deploymentsInOrder returns the deployments in file order.
func (c *Config) deploymentsInOrder() []*Deployment {
	if len(c.order) == len(c.Deployments) {
		out := make([]*Deployment, 0, len(c.order))
		for _, name := range c.order {
			out = append(out, c.Deployments[name])
		}
		return out
	}
	// A Config built by hand: active, then target.
	out := []*Deployment{c.Active}
	if c.Target != nil {
		out = append(out, c.Target)
	}
	return out
}

func (d *Deployment) writeJSON(b *bytes.Buffer) {
	b.WriteByte('{')
	writeKey(b, "read_repair", true)
	b.WriteString(strconv.FormatBool(d.ReadRepair))
	writeKey(b, "background_repair", false)
	b.WriteString(strconv.FormatBool(d.BackgroundRepair))
	writeKey(b, "background_repair_interval", false)
	writeDuration(b, d.BackgroundRepairInterval)
	writeKey(b, "write_quorum", false)
	writeString(b, d.WriteQuorum.String())
	writeKey(b, "read_quorum", false)
	writeString(b, d.ReadQuorum.String())
	writeKey(b, "request_timeout", false)
	writeDuration(b, d.RequestTimeout)
	writeKey(b, "max_value_size", false)
	b.WriteString(strconv.FormatInt(d.MaxValueSize, 10))
	writeKey(b, "max_timestamp_ahead", false)
	writeDuration(b, d.MaxTimestampAhead)
	writeKey(b, "max_ttl", false)
	writeDuration(b, d.MaxTTL)
	writeKey(b, "tombstone_grace", false)
	writeDuration(b, d.TombstoneGrace)
	writeKey(b, "repair_bandwidth", false)
	b.WriteString(strconv.FormatInt(d.RepairBandwidth, 10))
	writeKey(b, "limits", false)
	l := d.Limits
	fmt.Fprintf(b, `{"max_connections":%d,"max_requests_in_flight":%d,"max_requests_per_connection":%d,"max_bytes_in_flight":%d,"header_timeout":`,
		l.MaxConnections, l.MaxRequestsInFlight, l.MaxRequestsPerConnection, l.MaxBytesInFlight)
	writeDuration(b, l.HeaderTimeout)
	b.WriteString(`,"body_timeout":`)
	writeDuration(b, l.BodyTimeout)
	b.WriteString(`,"idle_timeout":`)
	writeDuration(b, l.IdleTimeout)
	b.WriteByte('}')
	writeKey(b, "hash", false)
	b.WriteString(`{"buckets_per_key":`)
	b.WriteString(strconv.Itoa(d.BucketsPerKey))
	b.WriteString(`,"points_per_bucket":`)
	b.WriteString(strconv.Itoa(d.PointsPerBucket))
	b.WriteByte('}')
	writeKey(b, "buckets", false)
	b.WriteByte('{')
	for i, bucket := range d.Buckets {
		writeKey(b, bucket.Name, i == 0)
		b.WriteByte('{')
		for j, n := range bucket.Nodes {
			writeKey(b, n.ID, j == 0)
			b.WriteByte('[')
			writeString(b, n.Host)
			if n.HTTPPort != 0 {
				b.WriteByte(',')
				b.WriteString(strconv.Itoa(n.HTTPPort))
			}
			b.WriteByte(',')
			b.WriteString(strconv.Itoa(n.BinaryPort))
			b.WriteByte(']')
		}
		b.WriteByte('}')
	}
	b.WriteString("}}")
}

func writeKey(b *bytes.Buffer, k string, first bool) {
	if !first {
		b.WriteByte(',')
	}
	writeString(b, k)
	b.WriteByte(':')
}

func writeString(b *bytes.Buffer, s string) {
	enc, _ := json.Marshal(s) // a string always marshals
	b.Write(enc)
}

func writeDuration(b *bytes.Buffer, d time.Duration) { writeString(b, d.String()) }
