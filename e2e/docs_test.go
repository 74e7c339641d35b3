package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// volatile names JSON fields whose values differ from run to run; the docs'
// answers must have them where the engine's do, with any value.
var volatile = map[string]bool{"startedAt": true, "exitedAt": true, "peerAddr": true, "pid": true, "handshakeDuration": true, "serverTime": true}

type docBlock struct {
	file    string
	line    int
	command string
	want    string
}

// docBlocks returns the curl examples marked "<!-- e2e: curl -->" in
// README.md: the ```sh block after each marker and the
// ```json block after that.
func docBlocks(t *testing.T) []docBlock {
	t.Helper()
	var blocks []docBlock
	for _, name := range []string{"README.md"} {
		f, err := os.Open(filepath.Join(repoRoot, name))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		n := 0
		var cur *docBlock
		fence := "" // language of the open fence, "" when outside
		var body []string
		for sc.Scan() {
			n++
			line := sc.Text()
			switch {
			case fence == "" && strings.TrimSpace(line) == "<!-- e2e: curl -->":
				cur = &docBlock{file: name, line: n}
			case fence == "" && strings.HasPrefix(line, "```") && cur != nil:
				fence = strings.TrimPrefix(line, "```")
				body = nil
			case fence != "" && strings.HasPrefix(line, "```"):
				text := strings.Join(body, "\n")
				switch {
				case fence == "sh" && cur != nil && cur.command == "":
					cur.command = text
				case fence == "json" && cur != nil && cur.command != "":
					cur.want = text
					blocks = append(blocks, *cur)
					cur = nil
				}
				fence = ""
			case fence != "":
				body = append(body, line)
			}
		}
		_ = f.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		if cur != nil {
			t.Fatalf("%s:%d: e2e marker without a sh block and a json block", name, cur.line)
		}
	}
	if len(blocks) < 5 {
		t.Fatalf("found %d curl examples marked <!-- e2e: curl --> in README.md, want at least 5", len(blocks))
	}
	return blocks
}

// sameJSON reports how got differs from want, ignoring the values (not the
// presence) of volatile fields and protojson's white space.
func sameJSON(want, got string) error {
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		return fmt.Errorf("docs answer is not JSON: %w", err)
	}
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		return fmt.Errorf("answer is not JSON: %w", err)
	}
	return diffJSON("$", w, g)
}

func diffJSON(path string, want, got any) error {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: got %T, want an object", path, got)
		}
		for k := range g {
			if _, ok := w[k]; !ok {
				return fmt.Errorf("%s.%s: unexpected field", path, k)
			}
		}
		for k, wv := range w {
			gv, ok := g[k]
			if !ok {
				return fmt.Errorf("%s.%s: missing", path, k)
			}
			if volatile[k] {
				continue
			}
			if err := diffJSON(path+"."+k, wv, gv); err != nil {
				return err
			}
		}
		return nil
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Errorf("%s: got %v, want %d elements", path, got, len(w))
		}
		for i := range w {
			if err := diffJSON(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); err != nil {
				return err
			}
		}
		return nil
	default:
		if !reflect.DeepEqual(want, got) {
			return fmt.Errorf("%s: got %v, want %v", path, got, want)
		}
		return nil
	}
}

// nodeVersionRE finds the Node.js major version the README requires.
var nodeVersionRE = regexp.MustCompile(`Node\.js (\d+) or later`)

// lowerBoundRE finds the ">=" lower bounds of an npm engines range.
var lowerBoundRE = regexp.MustCompile(`>=\s*v?(\d+)`)

// Every npm package the repository installs (web/ and examples/node/, per
// their lockfiles) admits the Node.js version the README names: no
// engines.node ">=" lower bound above it. Ranges without one are not
// checked.
func TestDocsNodeVersion(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	named := 0
	for _, m := range nodeVersionRE.FindAllSubmatch(readme, -1) {
		v, err := strconv.Atoi(string(m[1]))
		if err != nil {
			t.Fatal(err)
		}
		if named != 0 && v != named {
			t.Errorf("README.md names Node.js %d and %d", named, v)
		}
		named = v
	}
	if named == 0 {
		t.Fatal(`README.md names no "Node.js N or later"`)
	}
	for _, dir := range []string{"web", "examples/node"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, dir, "package-lock.json"))
		if err != nil {
			t.Fatal(err)
		}
		var lock struct {
			Packages map[string]struct {
				Version string          `json:"version"`
				Engines json.RawMessage `json:"engines"`
			} `json:"packages"`
		}
		if err := json.Unmarshal(b, &lock); err != nil {
			t.Fatalf("%s/package-lock.json: %v", dir, err)
		}
		if len(lock.Packages) == 0 {
			t.Fatalf("%s/package-lock.json lists no packages", dir)
		}
		for name, p := range lock.Packages {
			var engines map[string]string
			if json.Unmarshal(p.Engines, &engines) != nil {
				continue // absent, or the array form some old packages have
			}
			for _, m := range lowerBoundRE.FindAllStringSubmatch(engines["node"], -1) {
				if v, _ := strconv.Atoi(m[1]); v > named {
					t.Errorf("%s: %q %s needs node %s, README.md says Node.js %d or later", dir, name, p.Version, engines["node"], named)
				}
			}
		}
	}
}

// docLimits are the sizes the docs must stay within, in bytes: reference
// material belongs in docs/, history in git.
var docLimits = map[string]int{"README.md": 18 << 10, "BENCHMARKS.md": 15 << 10, "RELIABILITY.md": 30 << 10}

// testNameRE finds the tests, fuzz targets and benchmarks a doc names: in
// backquotes, or after the ^ of a -run or -fuzz pattern.
var testNameRE = regexp.MustCompile("[`^]((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]+)")

// testFuncRE finds the tests, fuzz targets and benchmarks a file declares.
var testFuncRE = regexp.MustCompile(`(?m)^func ((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]+)\(`)

// The docs stay within their sizes, every RELIABILITY.md table row within
// 400 characters, and every test it names as proof exists.
func TestDocsLimits(t *testing.T) {
	t.Parallel()
	for name, limit := range docLimits {
		fi, err := os.Stat(filepath.Join(repoRoot, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > int64(limit) {
			t.Errorf("%s is %d bytes, over its %d: move reference material to docs/", name, fi.Size(), limit)
		}
	}
	declared := map[string]bool{}
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range testFuncRE.FindAllSubmatch(b, -1) {
			declared[string(m[1])] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(repoRoot, "RELIABILITY.md"))
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "|") && utf8.RuneCountInString(line) > 400 {
			t.Errorf("RELIABILITY.md:%d: a row of %d characters, over 400", i+1, utf8.RuneCountInString(line))
		}
		for _, m := range testNameRE.FindAllStringSubmatch(line, -1) {
			if !declared[m[1]] {
				t.Errorf("RELIABILITY.md:%d: names %s, which no _test.go file declares", i+1, m[1])
			}
		}
	}
}
