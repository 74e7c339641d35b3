package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"sync"
	"syscall"
	"time"
)

type req struct {
	cmd  *exec.Cmd
	errc chan error
}

var reqs = make(chan req)

func spawnLoop() {
	runtime.LockOSThread()
	for r := range reqs {
		r.errc <- r.cmd.Start()
	}
}

func main() {
	path := os.Args[1]
	n := 100
	go spawnLoop()
	for round := 0; round < 3; round++ {
		for _, mode := range []string{"direct", "spawner"} {
			var wg sync.WaitGroup
			var mu sync.Mutex
			var cmds []*exec.Cmd
			var lat []time.Duration
			t0 := time.Now()
			for range n {
				wg.Go(func() {
					cmd := exec.Command(path, "ready")
					cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
					s := time.Now()
					var err error
					if mode == "direct" {
						err = cmd.Start()
					} else {
						errc := make(chan error, 1)
						reqs <- req{cmd, errc}
						err = <-errc
					}
					d := time.Since(s)
					if err != nil {
						panic(err)
					}
					mu.Lock()
					cmds = append(cmds, cmd)
					lat = append(lat, d)
					mu.Unlock()
				})
			}
			wg.Wait()
			all := time.Since(t0)
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			fmt.Printf("%-8s all started %v; Start p50 %v p99 %v\n", mode, all.Round(time.Microsecond), lat[n/2].Round(time.Microsecond), lat[n*99/100].Round(time.Microsecond))
			for _, c := range cmds {
				c.Process.Signal(syscall.SIGKILL)
				c.Wait()
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
}
