package deploy_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/vmre/vmre/config"
	"github.com/zclconf/go-cty/cty"
)

const nomadPath = "nomad/vmre.nomad.hcl"

// nomadVars are the runtime variables the job interpolates, with the
// values a Nomad client would give them.
var nomadVars = map[string]cty.Value{
	"NOMAD_TASK_DIR":    cty.StringVal("/alloc/task/local"),
	"NOMAD_SECRETS_DIR": cty.StringVal("/alloc/task/secrets"),
	"NOMAD_ADDR_api":    cty.StringVal("10.0.0.7:9660"),
}

// hclBlock finds the blocks of a type (and, if label is not empty, that
// first label) in body.
func hclBlocks(body *hclsyntax.Body, typ, label string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range body.Blocks {
		if b.Type == typ && (label == "" || (len(b.Labels) > 0 && b.Labels[0] == label)) {
			out = append(out, b)
		}
	}
	return out
}

func hclBlock(t *testing.T, body *hclsyntax.Body, typ, label string) *hclsyntax.Block {
	t.Helper()
	bs := hclBlocks(body, typ, label)
	if len(bs) != 1 {
		t.Fatalf("%s: %d %s %q blocks, want 1", nomadPath, len(bs), typ, label)
	}
	return bs[0]
}

// hclValue evaluates attribute name of body, with the job's variables.
func hclValue(t *testing.T, body *hclsyntax.Body, name string) cty.Value {
	t.Helper()
	attr, ok := body.Attributes[name]
	if !ok {
		t.Fatalf("%s: no attribute %s", nomadPath, name)
	}
	v, diags := attr.Expr.Value(&hcl.EvalContext{Variables: nomadVars})
	if diags.HasErrors() {
		t.Fatalf("%s: %s: %v", nomadPath, name, diags)
	}
	return v
}

func hclString(t *testing.T, body *hclsyntax.Body, name string) string {
	t.Helper()
	v := hclValue(t, body, name)
	if v.Type() != cty.String {
		t.Fatalf("%s: %s is %s, want a string", nomadPath, name, v.Type().FriendlyName())
	}
	return v.AsString()
}

func hclDuration(t *testing.T, body *hclsyntax.Body, name string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(hclString(t, body, name))
	if err != nil {
		t.Fatalf("%s: %s: %v", nomadPath, name, err)
	}
	return d
}

// TestNomadJob parses the job with HCL's own parser and checks it against
// vmre: the kill timeout against vmre's stop bound, the command line
// against vmre's flags, the config file against vmre's loader, the gRPC
// checks against the API port and the runtime names.
func TestNomadJob(t *testing.T) {
	t.Parallel()
	src, err := os.ReadFile(nomadPath)
	if err != nil {
		t.Fatal(err)
	}
	file, diags := hclsyntax.ParseConfig(src, nomadPath, hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	job := hclBlock(t, file.Body.(*hclsyntax.Body), "job", "").Body
	if typ := hclString(t, job, "type"); typ != "service" {
		t.Errorf("job type %q, want service", typ)
	}
	group := hclBlock(t, job, "group", "").Body

	// Nomad restarts the task; its restart block must be complete.
	restart := hclBlock(t, group, "restart", "").Body
	if attempts, _ := hclValue(t, restart, "attempts").AsBigFloat().Int64(); attempts < 1 {
		t.Errorf("restart.attempts = %d: Nomad would never restart vmre", attempts)
	}
	if delay, interval := hclDuration(t, restart, "delay"), hclDuration(t, restart, "interval"); delay <= 0 || interval <= delay {
		t.Errorf("restart delay %v, interval %v", delay, interval)
	}
	if mode := hclString(t, restart, "mode"); mode != "fail" && mode != "delay" {
		t.Errorf("restart.mode %q", mode)
	}

	task := hclBlock(t, group, "task", "vmre").Body
	if kill := hclDuration(t, task, "kill_timeout"); kill <= stopBound {
		t.Errorf("kill_timeout %v: Nomad would SIGKILL vmre within its stop bound %v (Nomad's default is 5 s)", kill, stopBound)
	} else if kill > 30*time.Second {
		t.Errorf("kill_timeout %v exceeds a Nomad client's default max_kill_timeout of 30 s, which would cut it", kill)
	}
	if sig := hclString(t, task, "kill_signal"); sig != "SIGTERM" {
		t.Errorf("kill_signal %s, want SIGTERM", sig)
	}
	cfg := hclBlock(t, task, "config", "").Body
	var args []string
	for _, v := range hclValue(t, cfg, "args").AsValueSlice() {
		args = append(args, v.AsString())
	}
	checkRunFlags(t, args)
	if !hasFlag(args, "exit-on-failure") {
		t.Error("args lack --exit-on-failure: a runtime that failed for good would never restart vmre")
	}

	// The templates render the token and the config file the args name.
	rendered := map[string]*hclsyntax.Body{}
	for _, tmpl := range hclBlocks(task, "template", "") {
		dest := hclString(t, tmpl.Body, "destination")
		rendered[filepath.Base(dest)] = tmpl.Body
	}
	tokenFile, _ := flagValue(args, "token-file")
	if tmpl := rendered[filepath.Base(tokenFile)]; tmpl == nil {
		t.Errorf("no template renders --token-file %s", tokenFile)
	} else if perms := hclString(t, tmpl, "perms"); perms != "0600" && perms != "0400" {
		t.Errorf("token template perms %s: vmre refuses a token file others can read", perms)
	}
	configFile, _ := flagValue(args, "config")
	var names []string
	if tmpl := rendered[filepath.Base(configFile)]; tmpl == nil {
		t.Errorf("no template renders --config %s", configFile)
	} else {
		f, err := config.Parse(configFile, []byte(hclString(t, tmpl, "data")))
		if err != nil {
			t.Fatalf("the config template: %v", err)
		}
		for _, rt := range f.Runtimes {
			names = append(names, rt.Spec.Name)
		}
		if hclString(t, tmpl, "change_mode") == "signal" && hclString(t, tmpl, "change_signal") != "SIGHUP" {
			t.Error("the config template signals something else than SIGHUP, which vmre reloads on")
		}
	}

	// The checks: gRPC health on the API port, for the engine and for
	// runtimes the config file declares.
	listen, _ := flagValue(args, "listen")
	_, port, _ := strings.Cut(listen, ":")
	network := hclBlock(t, group, "network", "").Body
	api := hclBlock(t, network, "port", "api").Body
	if static := hclValue(t, api, "static").AsBigFloat().String(); static != port {
		t.Errorf("port api is %s, vmre listens on %s", static, listen)
	}
	service := hclBlock(t, group, "service", "").Body
	var services []string
	for _, check := range hclBlocks(service, "check", "") {
		if typ := hclString(t, check.Body, "type"); typ != "grpc" {
			t.Errorf("check type %s, want grpc", typ)
		}
		if p := hclString(t, check.Body, "port"); p != "api" {
			t.Errorf("check on port %s, want api", p)
		}
		name := ""
		if _, ok := check.Body.Attributes["grpc_service"]; ok {
			name = hclString(t, check.Body, "grpc_service")
		}
		services = append(services, name)
		if name != "" && !slices.Contains(names, name) {
			t.Errorf("check grpc_service %q is no runtime of the config file (%v)", name, names)
		}
		if timeout, interval := hclDuration(t, check.Body, "timeout"), hclDuration(t, check.Body, "interval"); timeout >= interval {
			t.Errorf("check %q: timeout %v not below interval %v", name, timeout, interval)
		}
	}
	if !slices.Contains(services, "") || len(services) < 2 {
		t.Errorf("checks for %q, want the engine (\"\") and a runtime", services)
	}
}
