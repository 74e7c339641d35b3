//go:build !linux

package subprocess

import (
	"fmt"
	"syscall"

	"github.com/vmre/vmre"
)

type cgroup struct{ dir string }

func newCgroup(string, string, Limits) (*cgroup, error) {
	return nil, fmt.Errorf("%w: cgroups are Linux only", vmre.ErrInvalidConfig)
}

func (*cgroup) apply(*syscall.SysProcAttr) {}
func (*cgroup) started()                   {}
func (*cgroup) kill()                      {}
func (*cgroup) remove()                    {}

// CgroupDir returns "": cgroups are Linux only.
func (p *Process) CgroupDir() string { return "" }
