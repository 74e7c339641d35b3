package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// A real Prometheus scrapes a running `vmre run`: after a restart forced
// through the API, its own query API reports one restart and a resident
// memory above zero for the built-in example VM.
func TestPrometheusScrapesVMRE(t *testing.T) {
	t.Parallel()
	prom := requireTool(t, "prometheus")
	e := startVMRE(t)
	apiURL := e.apiURL()
	token, _ := e.token()

	// The runtime's id, from the API itself.
	var list struct {
		Runtimes []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		} `json:"runtimes"`
	}
	for start := time.Now(); len(list.Runtimes) == 0 || list.Runtimes[0].State != "RUNTIME_STATE_RUNNING"; {
		if time.Since(start) > 3*time.Minute {
			t.Fatalf("the example VM is not running: %+v", list)
		}
		apiCall(t, apiURL, token, "ListRuntimes", "{}", &list)
		time.Sleep(50 * time.Millisecond) // a poll rate, not a wait for an event
	}
	id := list.Runtimes[0].ID

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	target := strings.TrimPrefix(apiURL, "http://")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(
		"global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: vmre\n    static_configs: [{targets: [%q]}]\n", target)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Port 0, and the port Prometheus logs: a port picked free beforehand
	// can be taken (by any process's outgoing connection) before
	// Prometheus binds it.
	cmd := exec.Command(prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:0")
	listening := &listenLog{next: &testLogWriter{t: t, prefix: "prometheus: "}, addr: make(chan string, 1)}
	cmd.Stdout = listening
	cmd.Stderr = listening
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		<-waited
	})
	var promAddr string
	select {
	case promAddr = <-listening.addr:
	case <-waited:
		t.Fatalf("Prometheus exited before listening: %v", cmd.ProcessState)
	case <-time.After(3 * time.Minute): // a bound for a hang
		t.Fatal("Prometheus logged no listening address")
	}

	apiCall(t, apiURL, token, "RestartRuntime", `{"id":"`+id+`"}`, nil)

	query := func(q string) (float64, bool) {
		resp, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false // Prometheus still starting
		}
		defer resp.Body.Close()
		var r struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || len(r.Data.Result) != 1 {
			return 0, false
		}
		s, _ := r.Data.Result[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	restarts := `vmre_runtime_restarts_total{id="` + id + `"}`
	rss := `vmre_runtime_resident_memory_bytes{id="` + id + `"}`
	// Prometheus scrapes every second and vmre samples usage every few
	// seconds: wait for both answers. The bound only turns a missing answer
	// into a failure instead of a hang.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		n, ok1 := query(restarts)
		m, ok2 := query(rss)
		if ok1 && ok2 && m > 0 {
			if n != 1 {
				t.Fatalf("%s = %v through Prometheus, want 1", restarts, n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus never reported %s and a positive %s", restarts, rss)
		}
		time.Sleep(200 * time.Millisecond) // a query rate, not a wait for an event
	}
	checkGrafanaDashboard(t, apiURL, promAddr)
}

// checkGrafanaDashboard checks docs/grafana-vmre.json against a running
// vmre and Prometheus: every query is valid PromQL to Prometheus, and
// every metric it names is in vmre's exposition (a runtime that has
// restarted and been sampled exposes every family).
func checkGrafanaDashboard(t *testing.T, apiURL, promAddr string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "docs", "grafana-vmre.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-vmre.json: %v", err)
	}
	var exprs []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, target := range p.Targets {
			exprs = append(exprs, target.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		// label_values(SELECTOR, LABEL) is Grafana's; its selector is PromQL.
		if sel, ok := strings.CutPrefix(v.Definition, "label_values("); ok {
			exprs = append(exprs, sel[:strings.LastIndex(sel, ",")])
		}
	}

	resp, err := http.Get(apiURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	_ = resp.Body.Close()
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	exposed := func(name string) bool {
		if _, ok := families[name]; ok {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if f, ok := families[strings.TrimSuffix(name, suffix)]; ok && strings.HasSuffix(name, suffix) &&
				f.GetType().String() == "HISTOGRAM" {
				return true
			}
		}
		return false
	}
	grafanaVars := strings.NewReplacer("$__rate_interval", "1m", "$job", ".*", "$name", ".*")
	for _, expr := range exprs {
		names := promQLMetricNames(expr)
		if len(names) == 0 {
			t.Errorf("no metric in %q", expr)
		}
		for _, name := range names {
			if !exposed(name) {
				t.Errorf("%q uses %s, which vmre does not expose", expr, name)
			}
		}
		q := grafanaVars.Replace(expr)
		r, err := http.Get("http://" + promAddr + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if r.StatusCode != http.StatusOK {
			t.Errorf("Prometheus refuses %q: %s %s", q, r.Status, body)
		}
	}
}

// promQLIdent matches PromQL identifiers; promQLSkip matches what holds
// none of the expression's metric names: strings, label matchers, range
// and subquery brackets, and grouping clauses.
var (
	promQLIdent = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	promQLSkip  = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]|\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
)

// promQLMetricNames returns the metric names expr selects: identifiers
// that are neither functions (followed by "(") nor keywords. It knows
// enough PromQL for the dashboard's queries, not all of it.
func promQLMetricNames(expr string) []string {
	rest := promQLSkip.ReplaceAllString(expr, " ")
	var names []string
	for _, loc := range promQLIdent.FindAllStringIndex(rest, -1) {
		word := rest[loc[0]:loc[1]]
		after := strings.TrimLeft(rest[loc[1]:], " ")
		if strings.HasPrefix(after, "(") || (loc[0] > 0 && (rest[loc[0]-1] >= '0' && rest[loc[0]-1] <= '9' || rest[loc[0]-1] == '.')) {
			continue
		}
		switch word {
		case "and", "or", "unless", "bool", "offset", "inf", "nan", "Inf", "NaN":
			continue
		}
		names = append(names, word)
	}
	return names
}

// apiCall calls a RuntimeService method with Connect JSON and the token.
func apiCall(t *testing.T, apiURL, token, method, body string, out any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost,
		apiURL+"/vmre.v1.RuntimeService/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s", method, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: %v", method, err)
		}
	}
}

// listenLog passes Prometheus's log on to next and sends the address of
// its first `msg="Listening on" address=HOST:PORT` line on addr (which
// must have room for it). exec.Cmd's copying goroutine is its only
// writer.
type listenLog struct {
	next io.Writer
	addr chan string
	line []byte
	sent bool
}

func (l *listenLog) Write(p []byte) (int, error) {
	l.line = append(l.line, p...)
	for {
		i := bytes.IndexByte(l.line, '\n')
		if i < 0 {
			break
		}
		line := string(l.line[:i])
		l.line = l.line[i+1:]
		if _, rest, ok := strings.Cut(line, `msg="Listening on" address=`); ok && !l.sent {
			addr, _, _ := strings.Cut(rest, " ")
			l.addr <- addr
			l.sent = true
		}
	}
	return l.next.Write(p)
}
