// Package archive is the format of Tako's backups: one portable file of
// records (keys with their timestamps, values and tombstones) copied from a
// cluster range by range, compressed, with a checksum on every part, so
// that a truncated or damaged archive is refused with the offset and the
// reason before anything of it is restored.
//
// An archive is the 8 bytes of Magic, then frames:
//
//	+------+------------+------------+-----------------+
//	| kind |   length   |   crc32c   |     payload     |
//	|  u8  | u32 (big e.)| u32 (big e.)| length bytes   |
//	+------+------------+------------+-----------------+
//
// The checksum is CRC-32C (Castagnoli) of the kind, the length and the
// payload. The frames, in order:
//
//   - one KindHeader: the Header, as JSON;
//   - KindRecords frames: records of one range of the header's, in
//     (hash, key) order within the range, zstd-compressed (see Entry for
//     their encoding); the last key of a range's last frame is where an
//     interrupted backup resumes that range;
//   - a KindRangeDone frame after the last records of each range;
//   - one KindEnd: the Summary, as JSON. An archive without it is
//     incomplete (an interrupted backup, to resume).
//
// The ranges' frames may interleave (a backup copies several ranges at
// once). Nothing is ever rewritten: a resumed backup appends.
package archive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Magic starts every archive: "TAKOARC" and the format's major version.
const Magic = "TAKOARC1"

// Frame kinds.
const (
	KindHeader    byte = 'H'
	KindRecords   byte = 'R'
	KindRangeDone byte = 'D'
	KindEnd       byte = 'E'
)

// frameHeaderSize is a frame's kind, length and checksum.
const frameHeaderSize = 9

// MaxFrame bounds a frame's payload. A records frame holds at least one
// record however large (a value of up to max_value_size), so the bound is
// well above any value a cluster accepts; a longer length is damage.
const MaxFrame = 1 << 30

// Format is the version of the header this package writes; a reader
// refuses a newer one.
const Format = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// The compressor and decompressor are shared: their EncodeAll and
// DecodeAll may run concurrently, and each costs far more to make than a
// frame does to compress.
var (
	encoder = sync.OnceValue(func() *zstd.Encoder {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest))
		if err != nil {
			panic(fmt.Sprintf("archive: zstd: %v", err)) // only for options it does not know
		}
		return enc
	})
	decoder = sync.OnceValue(func() *zstd.Decoder {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(MaxFrame))
		if err != nil {
			panic(fmt.Sprintf("archive: zstd: %v", err))
		}
		return dec
	})
)

// Header describes an archive: what it copied, and from when.
type Header struct {
	// Format is the header's version (Format).
	Format int `json:"format"`
	// ID names the archive; an incremental one names its parent by it.
	ID string `json:"id"`
	// Created is when the backup started, by the machine that took it.
	Created time.Time `json:"created"`
	// AsOf is the backup's point, in microseconds of the cluster's clock:
	// every write acknowledged before the backup started has a timestamp
	// below it and is in the archive (or in its chain).
	AsOf int64 `json:"as_of"`
	// Since, for an incremental archive, is its parent's AsOf less an
	// overlap for the clocks' differences: it holds only the versions
	// stamped after it. 0 for a full backup.
	Since int64 `json:"since,omitempty"`
	// Parent is the ID of the archive an incremental one follows.
	Parent string `json:"parent,omitempty"`
	// Source says what was backed up: the cluster's deployment.
	Source string `json:"source,omitempty"`
	// Ranges are the hash ranges copied, each whole; together they cover
	// the hash space once.
	Ranges []Range `json:"ranges"`
}

// Range is an inclusive range of key hashes (keyhash.Sum).
type Range struct {
	Lo uint32 `json:"lo"`
	Hi uint32 `json:"hi"`
}

// Contains reports whether hash is in r.
func (r Range) Contains(hash uint32) bool { return r.Lo <= hash && hash <= r.Hi }

// Summary is what the end frame says of the archive.
type Summary struct {
	// Records, Tombstones: how many records the archive holds, and how
	// many of them are deletes.
	Records    uint64 `json:"records"`
	Tombstones uint64 `json:"tombstones"`
	// Bytes are the keys' and values' bytes, before compression.
	Bytes uint64 `json:"bytes"`
	// Finished is when the backup ended.
	Finished time.Time `json:"finished"`
}

// CorruptError says where an archive is damaged, and how: what a reader
// returns for a truncated file, a checksum that does not match, or a
// frame that does not decode.
type CorruptError struct {
	// Offset is the byte offset of the frame (or the magic) at fault.
	Offset int64
	// Reason says what is wrong there.
	Reason string
	// Truncated: the file ends inside that frame (the tail of a write that
	// was interrupted, or a file cut short).
	Truncated bool
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("archive: damaged at byte %d: %s", e.Offset, e.Reason)
}

// ErrIncomplete is wrapped by the error of a reader that reached the end of
// an archive without its end frame: the backup was interrupted (resume it),
// or the file was cut at a frame's boundary.
var ErrIncomplete = errors.New("archive: incomplete: it has no end frame (an interrupted backup, or a truncated file)")

// frameHeader encodes a frame's kind, length and the checksum of kind,
// length and payload.
func frameHeader(kind byte, payload []byte) [frameHeaderSize]byte {
	var h [frameHeaderSize]byte
	h[0] = kind
	binary.BigEndian.PutUint32(h[1:5], uint32(len(payload)))
	crc := crc32.Update(0, castagnoli, h[:5])
	crc = crc32.Update(crc, castagnoli, payload)
	binary.BigEndian.PutUint32(h[5:9], crc)
	return h
}
