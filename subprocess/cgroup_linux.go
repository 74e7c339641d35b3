package subprocess

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vmre/vmre"
)

// cgroup is the cgroup v2 directory of one launch (Config.CgroupRoot).
type cgroup struct {
	dir string
	fd  *os.File // open until the process has started in it
}

// newCgroup creates a cgroup for a plugin under root, with l's memory and
// processes limits, and opens it for clone3's CLONE_INTO_CGROUP, so the
// plugin is in it from its first instruction.
func newCgroup(root, name string, l Limits) (*cgroup, error) {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '_'
	}, name)
	dir := filepath.Join(root, "vmre-"+safe+"-"+strings.ToLower(rand.Text()[:8]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%w: create cgroup: %w", vmre.ErrInvalidConfig, err)
	}
	cg := &cgroup{dir: dir}
	write := func(file, value string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
			cg.remove()
			return fmt.Errorf("%w: set cgroup %s (is its controller enabled in %s/cgroup.subtree_control?): %w", vmre.ErrInvalidConfig, file, root, err)
		}
		return nil
	}
	if l.MemoryBytes > 0 {
		if err := write("memory.max", strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
			return nil, err
		}
		// Past memory.max the kernel's OOM killer ends the whole cgroup,
		// not one process of it: a plugin is one unit.
		_ = os.WriteFile(filepath.Join(dir, "memory.oom.group"), []byte("1"), 0)
	}
	if l.Processes > 0 {
		if err := write("pids.max", strconv.Itoa(l.Processes)); err != nil {
			return nil, err
		}
	}
	fd, err := os.Open(dir)
	if err != nil {
		cg.remove()
		return nil, fmt.Errorf("%w: open cgroup: %w", vmre.ErrInvalidConfig, err)
	}
	cg.fd = fd
	return cg, nil
}

// apply makes cmd start in the cgroup.
func (c *cgroup) apply(attr *syscall.SysProcAttr) {
	attr.UseCgroupFD = true
	attr.CgroupFD = int(c.fd.Fd())
}

// started closes the descriptor the start needed.
func (c *cgroup) started() {
	if c != nil && c.fd != nil {
		_ = c.fd.Close()
		c.fd = nil
	}
}

// kill SIGKILLs every process in the cgroup, wherever its process group
// or session (Linux 5.14+; older kernels lack cgroup.kill and only the
// process group is killed).
func (c *cgroup) kill() {
	if c != nil {
		_ = os.WriteFile(filepath.Join(c.dir, "cgroup.kill"), []byte("1"), 0)
	}
}

// remove deletes the cgroup once its processes are gone. A killed
// process leaves the cgroup a moment after the kill, so it retries for a
// short while.
func (c *cgroup) remove() {
	if c == nil {
		return
	}
	c.started()
	for i := 0; i < 50; i++ {
		err := os.Remove(c.dir)
		if err == nil || errors.Is(err, os.ErrNotExist) || !errors.Is(err, syscall.EBUSY) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CgroupDir returns the directory of the plugin's cgroup (see
// Config.CgroupRoot), or "" if it has none. The directory is removed once
// the plugin has been reaped.
func (p *Process) CgroupDir() string {
	if p.cgroup == nil {
		return ""
	}
	return p.cgroup.dir
}
