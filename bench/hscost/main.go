// Command hscost launches avaplugin ROUNDS times K at once with vmre's
// Bootstrap, lets each round's handshake servers shut down, and stops the
// plugins: run under cachegrind with two round counts, the difference over
// the launches between them is the engine's instructions per launch.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/subprocess"
)

func main() {
	plugin := os.Args[1]
	rounds, _ := strconv.Atoi(os.Args[2])
	k, _ := strconv.Atoi(os.Args[3])
	cfg := subprocess.Config{
		Name:             "bench",
		Log:              zerolog.New(io.Discard),
		AcceptedVersions: []uint32{46},
		HandshakeTimeout: 20 * time.Second,
		GracefulTimeout:  5 * time.Second,
	}
	ctx := context.Background()
	for range rounds {
		ps := make([]*subprocess.Process, k)
		var wg sync.WaitGroup
		for i := range k {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := cfg
				p, err := subprocess.Bootstrap(ctx, subprocess.NewCmd(plugin, "serve"), &c)
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				ps[i] = p
			}()
		}
		wg.Wait()
		time.Sleep(1500 * time.Millisecond)
		for _, p := range ps {
			wg.Add(1)
			go func() { defer wg.Done(); p.Stop(ctx) }()
		}
		wg.Wait()
	}
}
