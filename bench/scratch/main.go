package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"time"

	"github.com/rs/zerolog"
	"github.com/vmre/vmre/subprocess"
)

func main() {
	path := os.Args[1]
	cfg := subprocess.Config{Log: zerolog.New(io.Discard), AcceptedVersions: []uint32{46}}
	for _, pause := range []time.Duration{0, 2 * time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond} {
		if pause == 0 {
			runtime.SetBlockProfileRate(1)
		}
		var d []time.Duration
		for range 60 {
			c := cfg
			_, st, err := subprocess.Bootstrap(context.Background(), subprocess.NewCmd(path, "serve"), &c)
			if err != nil {
				panic(err)
			}
			time.Sleep(pause)
			t := time.Now()
			st.Stop(context.Background())
			d = append(d, time.Since(t))
		}
		if pause == 0 {
			runtime.SetBlockProfileRate(0)
			f, _ := os.Create("/tmp/bb/block.prof")
			pprof.Lookup("block").WriteTo(f, 0)
			f.Close()
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		fmt.Printf("pause %v: stop p50 %v p90 %v\n", pause, d[len(d)/2].Round(time.Microsecond), d[len(d)*9/10].Round(time.Microsecond))
	}
}
