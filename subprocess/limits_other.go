//go:build !linux

package subprocess

import (
	"fmt"

	"github.com/vmre/vmre"
)

// applyRlimits refuses limits outside Linux, where vmre does not set them.
func applyRlimits(_ int, l Limits, _ bool) error {
	if l.IsZero() {
		return nil
	}
	return fmt.Errorf("%w: resource limits are only applied on Linux", vmre.ErrInvalidConfig)
}
