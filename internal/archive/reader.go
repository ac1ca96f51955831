package archive

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Reader reads an archive frame by frame, checking each: its checksum,
// that it decodes, that its records are in their range and in order, that
// no range ends twice or gets records after its end, and that the end
// frame counts what came before it and nothing follows it.
type Reader struct {
	r    *bufio.Reader
	off  int64 // of the next frame
	h    Header
	sum  Summary // counted so far
	done []bool
	last [][]byte // each range's last key so far
	end  bool
	buf  []byte // the current frame's payload
	raw  []byte // its records, decompressed
}

// Frame is one frame of an archive, as Reader.Next returns it.
type Frame struct {
	// Kind is KindRecords, KindRangeDone or KindEnd.
	Kind byte
	// Offset is where the frame starts in the archive.
	Offset int64
	// Range is the index, in the header's Ranges, of a records or range
	// done frame.
	Range int
	// Entries are a records frame's; their bytes are valid until the next
	// call of Next.
	Entries []Entry
	// Summary is an end frame's.
	Summary Summary
}

// NewReader reads the magic and the header of the archive r. Its error is a
// *CorruptError when r is not an archive or its header is damaged.
func NewReader(r io.Reader) (*Reader, error) {
	ar := &Reader{r: bufio.NewReaderSize(r, 64<<10)}
	magic := make([]byte, len(Magic))
	if _, err := io.ReadFull(ar.r, magic); err != nil || string(magic) != Magic {
		return nil, &CorruptError{Offset: 0, Reason: "not a Tako archive (no " + Magic + " at its start)"}
	}
	ar.off = int64(len(Magic))
	kind, payload, err := ar.frame()
	if err != nil {
		return nil, err
	}
	if kind != KindHeader {
		return nil, &CorruptError{Offset: ar.off, Reason: fmt.Sprintf("the first frame is %q, want the header", kind)}
	}
	if err := json.Unmarshal(payload, &ar.h); err != nil {
		return nil, &CorruptError{Offset: ar.off, Reason: "the header does not decode: " + err.Error()}
	}
	switch {
	case ar.h.Format < 1 || ar.h.Format > Format:
		return nil, &CorruptError{Offset: ar.off, Reason: fmt.Sprintf("header format %d, this program reads 1 to %d", ar.h.Format, Format)}
	case len(ar.h.Ranges) == 0:
		return nil, &CorruptError{Offset: ar.off, Reason: "the header names no range"}
	}
	ar.off += frameHeaderSize + int64(len(payload))
	ar.done = make([]bool, len(ar.h.Ranges))
	ar.last = make([][]byte, len(ar.h.Ranges))
	return ar, nil
}

// Header returns the archive's header.
func (r *Reader) Header() Header { return r.h }

// Next returns the next frame. After the end frame it returns io.EOF; at
// the end of the input without one, an error that wraps ErrIncomplete; on
// damage, a *CorruptError. Nothing a frame holds should be acted on before
// the whole archive was read without error (Verify), since a later frame
// may be damaged.
func (r *Reader) Next() (Frame, error) {
	if r.end {
		if _, err := r.r.ReadByte(); err != io.EOF {
			return Frame{}, &CorruptError{Offset: r.off, Reason: "bytes after the end frame"}
		}
		return Frame{}, io.EOF
	}
	kind, payload, err := r.frame()
	if err != nil {
		return Frame{}, err
	}
	f := Frame{Kind: kind, Offset: r.off}
	bad := func(format string, args ...any) (Frame, error) {
		return Frame{}, &CorruptError{Offset: f.Offset, Reason: fmt.Sprintf(format, args...)}
	}
	switch kind {
	case KindRecords:
		r.raw, err = decoder().DecodeAll(payload, r.raw[:0])
		if err != nil {
			return bad("records that do not decompress: %v", err)
		}
		i, entries, err := decodeEntries(r.raw)
		switch {
		case err != nil:
			return bad("records that do not decode: %v", err)
		case i >= len(r.h.Ranges):
			return bad("records of range %d; the header has %d", i, len(r.h.Ranges))
		case r.done[i]:
			return bad("records of range %d after its end", i)
		}
		prev := r.last[i]
		var added Summary
		for _, e := range entries {
			if err := checkPlace(r.h.Ranges[i], prev, e.Key); err != nil {
				return bad("range %d: %v", i, err)
			}
			prev = e.Key
			added.Records++
			added.Bytes += uint64(len(e.Key) + len(e.Record.Value))
			if e.Record.Tombstone {
				added.Tombstones++
			}
		}
		r.last[i] = append(r.last[i][:0], prev...)
		r.sum.Records += added.Records
		r.sum.Tombstones += added.Tombstones
		r.sum.Bytes += added.Bytes
		f.Range, f.Entries = i, entries
	case KindRangeDone:
		i, n := binary.Uvarint(payload)
		switch {
		case n != len(payload):
			return bad("a range's end that does not decode")
		case i >= uint64(len(r.h.Ranges)):
			return bad("the end of range %d; the header has %d", i, len(r.h.Ranges))
		case r.done[i]:
			return bad("range %d ends twice", i)
		}
		r.done[i] = true
		f.Range = int(i)
	case KindEnd:
		if err := json.Unmarshal(payload, &f.Summary); err != nil {
			return bad("an end frame that does not decode: %v", err)
		}
		for i, d := range r.done {
			if !d {
				return bad("the end frame comes before range %d ends", i)
			}
		}
		if got := f.Summary; got.Records != r.sum.Records || got.Tombstones != r.sum.Tombstones || got.Bytes != r.sum.Bytes {
			return bad("the end frame counts %d records (%d tombstones, %d bytes), the archive holds %d (%d, %d)",
				got.Records, got.Tombstones, got.Bytes, r.sum.Records, r.sum.Tombstones, r.sum.Bytes)
		}
		r.sum.Finished = f.Summary.Finished
		r.end = true
	default:
		return bad("a frame of unknown kind %q", kind)
	}
	r.off += frameHeaderSize + int64(len(payload))
	return f, nil
}

// frame reads the frame at r.off and checks its checksum; it does not
// advance r.off.
func (r *Reader) frame() (byte, []byte, error) {
	var h [frameHeaderSize]byte
	n, err := io.ReadFull(r.r, h[:])
	switch {
	case n == 0 && errors.Is(err, io.EOF):
		return 0, nil, fmt.Errorf("at byte %d: %w", r.off, ErrIncomplete)
	case err != nil:
		return 0, nil, &CorruptError{Offset: r.off, Reason: fmt.Sprintf("the file ends inside a frame's header (%d of %d bytes)", n, frameHeaderSize), Truncated: true}
	}
	length := binary.BigEndian.Uint32(h[1:5])
	if length > MaxFrame {
		return 0, nil, &CorruptError{Offset: r.off, Reason: fmt.Sprintf("a frame of %d bytes, more than %d", length, MaxFrame)}
	}
	if cap(r.buf) < int(length) {
		r.buf = make([]byte, length)
	}
	r.buf = r.buf[:length]
	if n, err := io.ReadFull(r.r, r.buf); err != nil {
		return 0, nil, &CorruptError{Offset: r.off, Reason: fmt.Sprintf("the file ends inside a frame (%d of its %d bytes)", n, length), Truncated: true}
	}
	crc := crc32.Update(0, castagnoli, h[:5])
	crc = crc32.Update(crc, castagnoli, r.buf)
	if want := binary.BigEndian.Uint32(h[5:9]); crc != want {
		return 0, nil, &CorruptError{Offset: r.off, Reason: fmt.Sprintf("checksum %08x, the frame says %08x", crc, want)}
	}
	return h[0], r.buf, nil
}

// State is what Scan found in an archive: enough to verify it, list it,
// or resume the backup that wrote it.
type State struct {
	Header Header
	// Complete: the archive has its end frame and nothing is damaged.
	Complete bool
	// Summary counts the records read (the end frame's, when Complete).
	Summary Summary
	// Done marks the ranges copied whole; After holds each other range's
	// last key in the archive (nil: none yet), where a backup resumes.
	Done  []bool
	After [][]byte
	// Good is the offset right after the last whole, sound frame: where
	// a resumed backup truncates the file and appends.
	Good int64
	// Frames counts the frames read, the header's included.
	Frames int
}

// Scan reads the whole archive r. It returns the state up to the first
// problem and the problem: nil for a complete archive, an error wrapping
// ErrIncomplete for one that ends at a frame's boundary without its end,
// a *CorruptError (Truncated when the file ends inside a frame: the tail
// of an interrupted write) for damage.
func Scan(r io.Reader) (*State, error) {
	ar, err := NewReader(r)
	if err != nil {
		return nil, err
	}
	s := &State{Header: ar.h, Good: ar.off, Frames: 1}
	for {
		_, err := ar.Next()
		if err == io.EOF {
			s.Complete = true
			break
		}
		if err != nil {
			s.fill(ar)
			return s, err
		}
		s.Frames++
		s.Good = ar.off
	}
	s.fill(ar)
	return s, nil
}

func (s *State) fill(ar *Reader) {
	s.Summary = ar.sum
	s.Done = append([]bool(nil), ar.done...)
	s.After = make([][]byte, len(ar.last))
	for i, k := range ar.last {
		if len(k) > 0 {
			s.After[i] = append([]byte(nil), k...)
		}
	}
}
