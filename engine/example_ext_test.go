package engine_test

import (
	"context"
	"fmt"

	"github.com/vmre/vmre/engine"
)

// A watcher sees a snapshot first, then every change. Attached runtimes are
// watched like launched ones, but the engine refuses to stop them.
func ExampleEngine_Watch() {
	ctx := context.Background()
	eng, err := engine.New(engine.Config{}) // attach only: no launcher needed
	if err != nil {
		panic(err)
	}
	defer eng.Close(ctx)

	w := eng.Watch()
	defer w.Close()
	first, _ := w.Next(ctx)
	fmt.Println("snapshot of", len(first.Snapshot), "runtimes")

	rt, _ := eng.Attach(42, "127.0.0.1:50001", "127.0.0.1:40000")
	change, _ := w.Next(ctx)
	fmt.Println(change.Runtime.ID, change.Runtime.State, change.Runtime.VMAddr)

	_, err = eng.Stop(ctx, rt.ID)
	fmt.Println(err)
	// Output:
	// snapshot of 0 runtimes
	// r1 attached 127.0.0.1:50001
	// stop r1: runtime is attached: its process is not ours to stop or restart
}
