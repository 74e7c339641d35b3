package vmre_test

import (
	"errors"
	"fmt"

	"github.com/vmre/vmre"
)

// Failures are classified with errors.Is against the root sentinels, however
// deeply they are wrapped.
func Example_errors() {
	err := fmt.Errorf("start vm %q: %w", "myvm",
		fmt.Errorf("%w: %w", vmre.ErrHandshakeFailed, &vmre.VersionMismatchError{Accepted: []uint32{42}, Got: 41}))

	fmt.Println(err)
	fmt.Println(errors.Is(err, vmre.ErrHandshakeFailed), errors.Is(err, vmre.ErrProtocolVersionMismatch))
	// Output:
	// start vm "myvm": handshake failed: protocol version mismatch engine: 42 vm: 41
	// true true
}

// A plugin reads the engine's handshake address from the first of these
// variables that is set.
func ExampleEngineAddressKeys() {
	fmt.Println(vmre.EngineAddressKeys())
	// Output: [VMRE_ENGINE_ADDR AVALANCHE_VM_RUNTIME_ENGINE_ADDR LUX_VM_RUNTIME_ENGINE_ADDR]
}
