package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vmre/vmre/api"
	"github.com/vmre/vmre/engine"
	"github.com/vmre/vmre/subprocess"
)

// benchMetrics measures /metrics: the launch time of an engine whose API
// (and so its metrics watcher) is served and scraped every second, next
// to one without, launches interleaved in the same run; then, with
// -metrics-n real plugins live and sampled, the latency of a scrape and
// the engine CPU it costs.
func benchMetrics(ctx context.Context, e *env) error {
	newEngine := func() (*engine.Engine, error) {
		return engine.New(engine.Config{
			Launcher: engine.NewSubprocessLauncher(subprocess.Config{
				Log:              vmreLogger(io.Discard),
				AcceptedVersions: []uint32{avaProtocolVersion},
				HandshakeTimeout: 20 * time.Second,
			}, nil),
			AcceptedVersions: []uint32{avaProtocolVersion},
			SampleInterval:   5 * time.Second,
		})
	}
	off, err := newEngine()
	if err != nil {
		return err
	}
	defer off.Close(context.WithoutCancel(ctx))
	on, err := newEngine()
	if err != nil {
		return err
	}
	defer on.Close(context.WithoutCancel(ctx))
	base, stopAPI, err := serveAPI(on, api.Config{})
	if err != nil {
		return err
	}
	defer stopAPI()
	url := base + api.MetricsPath
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	scrape := func() (int64, error) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET /metrics: %s", resp.Status)
		}
		return io.Copy(io.Discard, resp.Body)
	}

	// A scraper every second, as an eager Prometheus would, while the
	// launches run.
	scraperCtx, stopScraper := context.WithCancel(ctx)
	var scraper sync.WaitGroup
	var scrapeErr error
	scraper.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-scraperCtx.Done():
				return
			case <-tick.C:
				if _, err := scrape(); err != nil {
					scrapeErr = err
					return
				}
			}
		}
	})
	launchOn := newRow("launch to running, API with /metrics served and scraped every 1 s", "ms")
	launchOff := newRow("launch to running, no API (interleaved with the row above)", "ms")
	spec := engine.Spec{Name: "bench", Path: e.ava, Args: []string{"serve"}}
	for i := range 2 * e.o.metricsLaunches {
		eng, r := off, launchOff
		if i%2 == 1 {
			eng, r = on, launchOn
		}
		t0 := time.Now()
		rt, err := eng.Launch(ctx, spec)
		if err != nil {
			stopScraper()
			return fmt.Errorf("launch: %w", err)
		}
		r.add(colVmre, ms(time.Since(t0)))
		if _, err := eng.Stop(ctx, rt.ID); err != nil {
			stopScraper()
			return fmt.Errorf("stop: %w", err)
		}
	}
	stopScraper()
	scraper.Wait()
	if scrapeErr != nil {
		return scrapeErr
	}
	ratio := newRow("launch p50 with metrics over without (same run)", "ratio")
	ratio.add(colVmre, launchOn.p50(colVmre)/launchOff.p50(colVmre))
	ratio.check("<= 1.10 (unchanged within noise)", launchOn.p50(colVmre) <= 1.10*launchOff.p50(colVmre))
	e.rows = append(e.rows, launchOn, launchOff, ratio)

	// Many live runtimes, in parallel batches to keep the setup short.
	n := e.o.metricsN
	const batch = 25
	for i := 0; i < n; i += batch {
		var wg sync.WaitGroup
		errs := make(chan error, batch)
		for j := i; j < min(i+batch, n); j++ {
			s := spec
			s.Name = fmt.Sprintf("vm-%d", j)
			wg.Go(func() {
				if _, err := on.Launch(ctx, s); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return fmt.Errorf("launch %d runtimes: %w", n, err)
		}
	}
	e.progress("metrics: %d runtimes running", n)
	// Wait for every runtime's first resource sample, so each scrape
	// carries its usage series too.
	for deadline := time.Now().Add(time.Minute); ; {
		sampled := 0
		for _, rt := range on.List() {
			if rt.Usage != nil {
				sampled++
			}
		}
		if sampled >= n {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d runtimes sampled after a minute", sampled, n)
		}
		time.Sleep(500 * time.Millisecond) // a poll rate, not a wait for an event
	}

	lat := newRow(fmt.Sprintf("GET /metrics, %d live runtimes", n), "ms")
	var size int64
	cpu0, t0 := processCPU(), time.Now()
	for range e.o.metricsScrapes {
		s0 := time.Now()
		b, err := scrape()
		if err != nil {
			return err
		}
		lat.add(colVmre, ms(time.Since(s0)))
		size = b
	}
	scrapeCPU, wall := processCPU()-cpu0, time.Since(t0)
	// The engine's background work (sampling) over as long, without
	// scrapes, is not the scrapes' cost.
	cpu1 := processCPU()
	select {
	case <-time.After(wall):
	case <-ctx.Done():
		return ctx.Err()
	}
	idleCPU := processCPU() - cpu1
	lat.check("p99 <= 50 ms", lat.p99(colVmre) <= 50)
	perScrape := newRow(fmt.Sprintf("engine CPU per scrape, %d live runtimes (scraper in-process; minus idle CPU over as long)", n), "ms")
	perScrape.add(colVmre, ms(max(scrapeCPU-idleCPU, 0))/float64(e.o.metricsScrapes))
	e.rows = append(e.rows, lat, perScrape)
	e.note("metrics: one scrape of %d runtimes is %d KiB of text, %d series", n, size>>10, seriesIn(ctx, client, url))
	return nil
}

// seriesIn counts the samples of one scrape.
func seriesIn(ctx context.Context, c *http.Client, url string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for line := range strings.Lines(string(b)) {
		if line != "" && line[0] != '#' {
			n++
		}
	}
	return n
}
