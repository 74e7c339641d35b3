package preflight

import (
	"io/fs"
	"sync"
)

// FormatCache remembers which files passed the header check (format, OS
// and architecture), by file identity, so that launching the same plugin
// again skips re-reading and re-parsing its header. Only that check is
// cached: the file type, mode and execute-permission checks run on every
// [Open], and a SHA-256 pin always hashes the opened file.
//
// An ELF binary's verdict includes its program interpreter (PT_INTERP,
// the dynamic loader), read from the header; since that is another file,
// whether it exists and is executable is checked on every Open, from the
// cached verdict or not.
//
// The identity is the opened file's device, inode, size, modification
// time and status-change time (fstat of the descriptor that is then
// executed), plus the target OS and architecture. Any write, truncation,
// chmod, or replacement by another file changes it (the kernel sets the
// status-change time, which no caller can set back), so a changed file is
// checked again. Only files that passed are remembered, and never a "#!"
// script (its check also looks at the interpreter, another file). Where
// the identity is not available (systems other than Linux) nothing is
// cached.
//
// A FormatCache holds at most its capacity of entries, evicting the
// oldest; it is safe for concurrent use. The zero value and a nil
// *FormatCache cache nothing.
type FormatCache struct {
	mu    sync.Mutex
	m     map[formatKey]verdict
	order []formatKey // ring of the keys in m, oldest at next once full
	next  int
}

// formatKey identifies one version of one file for one target.
type formatKey struct {
	dev, ino, size      uint64
	mtimeSec, mtimeNsec int64
	ctimeSec, ctimeNsec int64
	goos, goarch        string
}

// NewFormatCache returns a cache of at most capacity files (at least 1).
func NewFormatCache(capacity int) *FormatCache {
	capacity = max(capacity, 1)
	return &FormatCache{m: make(map[formatKey]verdict, capacity), order: make([]formatKey, 0, capacity)}
}

func (c *FormatCache) get(info fs.FileInfo, goos, goarch string) (key formatKey, v verdict, ok bool) {
	if c == nil || c.m == nil {
		return formatKey{}, verdict{}, false
	}
	key, ok = fileKey(info)
	if !ok {
		return formatKey{}, verdict{}, false
	}
	key.goos, key.goarch = goos, goarch
	c.mu.Lock()
	v, hit := c.m[key]
	c.mu.Unlock()
	return key, v, hit
}

// put remembers that the file key names passed the header check with
// verdict v. A zero key (no identity) is ignored.
func (c *FormatCache) put(key formatKey, v verdict) {
	if c == nil || c.m == nil || key == (formatKey{}) || v.format == "script" {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; ok {
		return
	}
	if len(c.order) < cap(c.order) {
		c.order = append(c.order, key)
	} else {
		delete(c.m, c.order[c.next])
		c.order[c.next] = key
		c.next = (c.next + 1) % len(c.order)
	}
	c.m[key] = v
}

// Len reports how many files the cache holds.
func (c *FormatCache) Len() int {
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}
