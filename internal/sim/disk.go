package sim

import (
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// slowDisk is a node's file system whose syncs take delay longer: a
// disk that is slow to make writes durable, the slowness that matters to a
// store that syncs every acknowledged write. Under the deterministic host
// the sleep advances the virtual clock.
type slowDisk struct {
	vfs.FS
	delay *atomic.Int64 // nanoseconds; 0 for a healthy disk
}

// wrap makes f's syncs slow while d.delay is set.
func (d slowDisk) wrap(f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return slowFile{File: f, delay: d.delay}, nil
}

// Create creates name, with slow syncs.
func (d slowDisk) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return d.wrap(d.FS.Create(name, category))
}

// OpenReadWrite opens name for reading and writing, with slow syncs.
func (d slowDisk) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return d.wrap(d.FS.OpenReadWrite(name, category, opts...))
}

// ReuseForWrite reuses oldname as newname, with slow syncs.
func (d slowDisk) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	return d.wrap(d.FS.ReuseForWrite(oldname, newname, category))
}

// OpenDir opens a directory, whose sync (of new names) is slow too.
func (d slowDisk) OpenDir(name string) (vfs.File, error) {
	return d.wrap(d.FS.OpenDir(name))
}

// slowFile is a file of a slowDisk.
type slowFile struct {
	vfs.File
	delay *atomic.Int64
}

func (f slowFile) wait() {
	if d := f.delay.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
}

// Sync waits for the disk's delay, then syncs.
func (f slowFile) Sync() error {
	f.wait()
	return f.File.Sync()
}

// SyncData waits for the disk's delay, then syncs the data.
func (f slowFile) SyncData() error {
	f.wait()
	return f.File.SyncData()
}

// SyncTo waits for the disk's delay, then syncs up to length.
func (f slowFile) SyncTo(length int64) (bool, error) {
	f.wait()
	return f.File.SyncTo(length)
}
