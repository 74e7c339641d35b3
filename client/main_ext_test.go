package client_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: a
// Client must release everything it started once it is closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
