package archive

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Writer writes an archive: its header first (NewWriter), then records
// and the end of each range as a backup copies them, then its end. Its
// methods are not safe for concurrent use. Each frame goes to the
// underlying writer whole, in one Write: a backup that stops between two
// leaves an archive that Scan reads up to the last whole frame.
type Writer struct {
	w   io.Writer
	off int64
	h   Header
	raw []byte // the records frame being encoded, before compression
	buf []byte // the frame, compressed, with its header
	sum Summary
	// done marks the ranges whose end was written; last is each range's
	// last key written (entries must come in order).
	done []bool
	last [][]byte
	err  error // the first write error: the archive is broken from there
}

// NewWriter writes the magic and h to w and returns a Writer for the rest.
// h.Format is set to Format; h must name at least one range.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if len(h.Ranges) == 0 {
		return nil, errors.New("archive: a header with no range")
	}
	h.Format = Format
	aw := newWriter(w, h, 0)
	head, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("archive: the header: %w", err)
	}
	if err := aw.write([]byte(Magic)); err != nil {
		return nil, err
	}
	if err := aw.frame(KindHeader, head); err != nil {
		return nil, err
	}
	return aw, nil
}

// AppendWriter returns a Writer that goes on from s, the Scan of an
// incomplete archive, writing to w, which must write right after the last
// whole frame s read (at s.Good): the file, truncated there, opened for
// appending. Ranges s found done stay done; the others resume after their
// cursor (s.After).
func AppendWriter(w io.Writer, s *State) (*Writer, error) {
	if s.Complete {
		return nil, errors.New("archive: the archive is complete: nothing to resume")
	}
	aw := newWriter(w, s.Header, s.Good)
	aw.sum = s.Summary
	copy(aw.done, s.Done)
	for i, k := range s.After {
		aw.last[i] = append([]byte(nil), k...)
	}
	return aw, nil
}

func newWriter(w io.Writer, h Header, off int64) *Writer {
	return &Writer{w: w, off: off, h: h, done: make([]bool, len(h.Ranges)), last: make([][]byte, len(h.Ranges))}
}

// Header returns the archive's header.
func (w *Writer) Header() Header { return w.h }

// Offset is how many bytes of the archive are written.
func (w *Writer) Offset() int64 { return w.off }

// Done reports whether range i was ended (RangeDone, or found done by the
// Scan that AppendWriter resumes).
func (w *Writer) Done(i int) bool { return w.done[i] }

// Cursor returns the last key written of range i: where a backup goes on
// with it (nil: at its start). The caller must not modify it.
func (w *Writer) Cursor(i int) []byte { return w.last[i] }

// Summary is what was written so far.
func (w *Writer) Summary() Summary { return w.sum }

// Records writes entries of range i (an index into the header's Ranges) as
// one frame. They must be in the range's order, after those written
// before for the range (a backup's cursor), and the range not ended.
func (w *Writer) Records(i int, entries []Entry) error {
	if w.err != nil {
		return w.err
	}
	if i < 0 || i >= len(w.h.Ranges) {
		return fmt.Errorf("archive: no range %d", i)
	}
	if w.done[i] {
		return fmt.Errorf("archive: range %d is already ended", i)
	}
	if len(entries) == 0 {
		return nil
	}
	w.raw = binary.AppendUvarint(w.raw[:0], uint64(i))
	var added Summary
	prev := w.last[i]
	for _, e := range entries {
		if len(e.Key) == 0 || len(e.Key) > MaxKeySize {
			return fmt.Errorf("archive: a key of %d bytes, want 1 to %d", len(e.Key), MaxKeySize)
		}
		if err := checkPlace(w.h.Ranges[i], prev, e.Key); err != nil {
			return fmt.Errorf("archive: range %d: %w", i, err)
		}
		prev = e.Key
		w.raw = appendEntry(w.raw, e)
		added.Records++
		added.Bytes += uint64(len(e.Key) + len(e.Record.Value))
		if e.Record.Tombstone {
			added.Tombstones++
		}
	}
	if len(w.raw) > MaxFrame {
		return fmt.Errorf("archive: %d bytes of records in one frame, more than %d", len(w.raw), MaxFrame)
	}
	if err := w.frame(KindRecords, encoder().EncodeAll(w.raw, nil)); err != nil {
		return err
	}
	w.last[i] = append(w.last[i][:0], entries[len(entries)-1].Key...)
	w.sum.Records += added.Records
	w.sum.Tombstones += added.Tombstones
	w.sum.Bytes += added.Bytes
	return nil
}

// RangeDone writes that range i is copied whole.
func (w *Writer) RangeDone(i int) error {
	if w.err != nil {
		return w.err
	}
	if i < 0 || i >= len(w.h.Ranges) {
		return fmt.Errorf("archive: no range %d", i)
	}
	if w.done[i] {
		return nil
	}
	if err := w.frame(KindRangeDone, binary.AppendUvarint(nil, uint64(i))); err != nil {
		return err
	}
	w.done[i] = true
	return nil
}

// End writes the end frame, once every range is done, and returns the
// archive's summary. It does not close the underlying writer.
func (w *Writer) End(finished time.Time) (Summary, error) {
	if w.err != nil {
		return Summary{}, w.err
	}
	for i, d := range w.done {
		if !d {
			return Summary{}, fmt.Errorf("archive: range %d (%d-%d) is not done", i, w.h.Ranges[i].Lo, w.h.Ranges[i].Hi)
		}
	}
	w.sum.Finished = finished.UTC()
	end, err := json.Marshal(w.sum)
	if err != nil {
		return Summary{}, fmt.Errorf("archive: the summary: %w", err)
	}
	if err := w.frame(KindEnd, end); err != nil {
		return Summary{}, err
	}
	return w.sum, nil
}

// frame writes one frame, whole, in one Write.
func (w *Writer) frame(kind byte, payload []byte) error {
	h := frameHeader(kind, payload)
	w.buf = append(append(w.buf[:0], h[:]...), payload...)
	return w.write(w.buf)
}

func (w *Writer) write(p []byte) error {
	n, err := w.w.Write(p)
	w.off += int64(n)
	if err != nil {
		w.err = fmt.Errorf("archive: writing at byte %d: %w", w.off, err)
		return w.err
	}
	return nil
}
