// Package deps enforces Firebreak's dependency rule: which package may
// import which. docs/architecture.md points here; the table below is the
// one place the rule is written.
//
// The layers, bottom up:
//
//	proto/gen                  generated wire types; imports nothing of ours
//	internal/ (leaves)         pki, tasksign, telemetry, bundle, awsemu, …
//	plugins/sdk, plugins/*     the plugin SDK and the actions built on it
//	agent/...                  the agent
//	controller/... (server)    the controller's server packages
//	controller/cli/...         the operator CLI and its subcommands
//	internal/assembly/...      the lab and the fleet bench: the whole system
//	                           in one process
//	test/...                   end-to-end suites and benchmarks
//
// The rules ("imports" is a direct import; "links" is any transitive
// dependency of the package's non-test code):
//
//	leaves      A package under internal/, except internal/assembly/...,
//	            imports no controller/, agent/ or plugins/ package.
//	assembly    Nothing under controller/ or agent/ imports
//	            internal/assembly/..., except the firebreak command's lab
//	            and bench subcommands (assemblyImporters below).
//	agent       A package under agent/ imports no controller/ package and
//	            no plugins/ package but the SDK (plugins/sdk).
//	both        Only internal/assembly/..., the firebreak command's
//	            whole-system subcommands (systemCommands below) and test/
//	            import both a controller/ package (the CLI's packages and
//	            the wire conversion layer controller/apiview aside) and an
//	            agent/ package.
//	server      The controller's server packages (everything under
//	            controller/ but controller/cli/... and controller/cmd/...)
//	            import no plugins/ or agent/ package and do not link
//	            github.com/hashicorp/go-plugin. Build tools that are never
//	            linked into the controller (buildTools below) are exempt.
//	plugins     A package under plugins/ imports no controller/ or agent/
//	            package.
//	cli         The base controller/cli package links, of this module, only
//	            proto/gen/..., controller/apiview, internal/ leaves and the
//	            input parsers it checks a command line with before sending
//	            it (cliParsers below): it talks to the controller over the
//	            wire. The subcommands that
//	            run the server or the assemblies (controller/cli/labcmd,
//	            controller/cli/benchcmd, …) live in their own packages.
//
//	sql         Only controller/store (and test fixtures) import
//	            database/sql or a SQL driver: nothing else holds a
//	            database handle or writes SQL.
//
// Test files (_test.go) are not held to the rule: a test may reach across
// layers for fixtures. Test fixture packages (a package named like
// storetest or playbookruntest, whose name ends in "test" and which
// imports "testing") count as test code for the same reason, and the
// fixtures rule keeps them out of every binary.
//
//	fixtures    No package outside test/ and the fixtures themselves that
//	            a binary builds from links a test fixture package.
package deps

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/firebreak-ir/firebreak"

// assemblyImporters are the packages under controller/ or agent/ that may
// import internal/assembly/...: the firebreak command's lab and bench
// subcommands.
var assemblyImporters = []string{
	"controller/cli/labcmd",
	"controller/cli/benchcmd",
}

// systemCommands are the firebreak command's subcommands that build the
// whole system in one process: the controller itself (servecmd, which also
// writes plugin manifests with the agent's plugin host), the lab and the
// bench.
var systemCommands = []string{
	"controller/cli/servecmd",
	"controller/cli/labcmd",
	"controller/cli/benchcmd",
}

// buildTools are programs under controller/ that run at build time and are
// never linked into the controller: the action catalogue's generator reads
// the actions' own descriptions.
var buildTools = []string{
	"controller/actioncatalog/gen",
}

// cliParsers are the packages the base CLI checks input with before it
// sends a request (selectors, playbook files, finding events) and the
// host-collect artifact names it offers: parsers and data, linking no
// server package (the cli rule checks what they link in turn).
var cliParsers = []string{
	"controller/selector",
	"controller/playbook",
	"controller/finding",
	"plugins/hostcollect/artifacts",
}

// goPlugin is the plugin host library the controller's server packages must
// not link: they check parameter schemas without it.
const goPlugin = "github.com/hashicorp/go-plugin"

// pkg is one package of the module, as go list describes it.
type pkg struct {
	// path is relative to the module ("controller/fleet").
	path string
	// imports are the direct imports of the non-test files, module-relative
	// for the module's own packages.
	imports []string
	// deps are every package the non-test code links, likewise.
	deps []string
}

// violation is one broken rule.
type violation struct {
	rule, importer, imported, why string
}

func (v violation) String() string {
	return fmt.Sprintf("rule %s: %s imports %s: %s", v.rule, v.importer, v.imported, v.why)
}

// rule checks one package and reports what it breaks.
type rule struct {
	name  string
	check func(p pkg) []violation
}

// rules is the dependency rule, one entry per row of the package comment.
var rules = []rule{
	{name: "leaves", check: func(p pkg) []violation {
		if !under(p.path, "internal") || under(p.path, "internal/assembly") {
			return nil
		}
		return forbidden(p, "leaves", "an internal/ leaf library imports no controller/, agent/ or plugins/ package", func(imp string) bool {
			return under(imp, "controller") || under(imp, "agent") || under(imp, "plugins")
		})
	}},
	{name: "assembly", check: func(p pkg) []violation {
		if !(under(p.path, "controller") || under(p.path, "agent")) || slices.Contains(assemblyImporters, p.path) {
			return nil
		}
		return forbidden(p, "assembly", "only the lab and bench subcommands "+strings.Join(assemblyImporters, ", ")+" may import an assembly", func(imp string) bool {
			return under(imp, "internal/assembly")
		})
	}},
	{name: "agent", check: func(p pkg) []violation {
		if !under(p.path, "agent") {
			return nil
		}
		return forbidden(p, "agent", "the agent imports no controller/ package and no plugins/ package but plugins/sdk", func(imp string) bool {
			return under(imp, "controller") || (under(imp, "plugins") && !under(imp, "plugins/sdk"))
		})
	}},
	{name: "both", check: func(p pkg) []violation {
		if under(p.path, "internal/assembly") || under(p.path, "test") || isFixture(p) || slices.Contains(systemCommands, p.path) {
			return nil
		}
		var ctl, agt []string
		for _, imp := range p.imports {
			switch {
			case under(imp, "controller") && !under(imp, "controller/cli") && imp != "controller/apiview":
				ctl = append(ctl, imp)
			case under(imp, "agent"):
				agt = append(agt, imp)
			}
		}
		if len(ctl) == 0 || len(agt) == 0 {
			return nil
		}
		var v []violation
		for _, imp := range agt {
			v = append(v, violation{rule: "both", importer: p.path, imported: imp,
				why: "only internal/assembly/... and test/ import both the controller (here " + strings.Join(ctl, ", ") + ") and the agent"})
		}
		return v
	}},
	{name: "server", check: func(p pkg) []violation {
		if !isServer(p) {
			return nil
		}
		v := forbidden(p, "server", "the controller's server packages import no plugins/ or agent/ package", func(imp string) bool {
			return under(imp, "plugins") || under(imp, "agent")
		})
		if slices.Contains(p.deps, goPlugin) {
			v = append(v, violation{rule: "server", importer: p.path, imported: goPlugin + " (linked)",
				why: "the controller's server packages do not link go-plugin; linked through " + strings.Join(linkedThrough(p, goPlugin), ", ")})
		}
		return v
	}},
	{name: "plugins", check: func(p pkg) []violation {
		if !under(p.path, "plugins") || isFixture(p) {
			return nil
		}
		return forbidden(p, "plugins", "plugins import no controller/ or agent/ package", func(imp string) bool {
			return under(imp, "controller") || under(imp, "agent")
		})
	}},
	{name: "cli", check: func(p pkg) []violation {
		if p.path != "controller/cli" {
			return nil
		}
		const why = "the base CLI package links only proto/gen, controller/apiview, internal/ leaves and the input parsers " +
			"(controller/selector, controller/playbook, controller/finding, plugins/hostcollect/artifacts)"
		// A forbidden direct import is where to cut; a forbidden link with
		// no such import came in through an allowed package.
		v := forbidden(p, "cli", why, func(imp string) bool { return !cliMayLink(imp) })
		if len(v) > 0 {
			return v
		}
		for _, d := range p.deps {
			if !cliMayLink(d) {
				v = append(v, violation{rule: "cli", importer: p.path, imported: d + " (linked)", why: why})
			}
		}
		return v
	}},
	{name: "sql", check: func(p pkg) []violation {
		if under(p.path, "controller/store") || under(p.path, "test") || isFixture(p) {
			return nil
		}
		return forbidden(p, "sql", "only controller/store opens a database or writes SQL; every other package reaches state through the store's interfaces", func(imp string) bool {
			return imp == "database/sql" || strings.HasPrefix(imp, "modernc.org/sqlite") || strings.HasPrefix(imp, "github.com/jackc/pgx")
		})
	}},
	{name: "fixtures", check: func(p pkg) []violation {
		if under(p.path, "test") || isFixture(p) {
			return nil
		}
		var v []violation
		for _, d := range p.deps {
			if fixtures[d] {
				v = append(v, violation{rule: "fixtures", importer: p.path, imported: d + " (linked)",
					why: "test fixture packages stay out of every non-test package"})
			}
		}
		return v
	}},
}

// fixtures is the set of test fixture packages, filled by load.
var fixtures = map[string]bool{}

// importers maps a package to the module packages that import it directly,
// for saying how a package came to link something; filled by load.
var importers = map[string][]string{}

func TestDependencyRule(t *testing.T) {
	pkgs := load(t)
	var broken []violation
	for _, p := range pkgs {
		for _, r := range rules {
			broken = append(broken, r.check(p)...)
		}
	}
	sort.Slice(broken, func(i, j int) bool { return broken[i].String() < broken[j].String() })
	for _, v := range broken {
		t.Error(v)
	}
	if len(broken) > 0 {
		t.Logf("%d imports break the dependency rule (test/deps/deps_test.go, docs/architecture.md)", len(broken))
	}
}

// TestRulesSeeTheModule guards the test itself: a go list that returned
// nothing, or paths the rules do not recognise, would pass every rule.
func TestRulesSeeTheModule(t *testing.T) {
	pkgs := load(t)
	seen := map[string]bool{}
	for _, p := range pkgs {
		seen[p.path] = true
	}
	for _, want := range []string{"controller", "controller/cli", "controller/fleet", "agent", "plugins/sdk", "internal/pki"} {
		if !seen[want] {
			t.Errorf("go list did not report %s; the rules would check nothing", want)
		}
	}
	// Each rule must fire on a package built to break it.
	bad := []struct {
		rule string
		p    pkg
	}{
		{"leaves", pkg{path: "internal/pki", imports: []string{"controller/store"}}},
		{"assembly", pkg{path: "controller/operator", imports: []string{"internal/assembly/lab"}}},
		{"agent", pkg{path: "agent", imports: []string{"plugins/hostisolate"}}},
		{"both", pkg{path: "controller/cli/pluginscmd", imports: []string{"agent/pluginhost", "controller/fleet"}}},
		{"server", pkg{path: "controller/fleet", imports: []string{"agent/pluginhost"}}},
		{"fixtures", pkg{path: "controller/fleet", deps: []string{"controller/store/storetest"}}},
		{"server", pkg{path: "controller/fleet", deps: []string{goPlugin}}},
		{"plugins", pkg{path: "plugins/noop", imports: []string{"controller/auth"}}},
		{"cli", pkg{path: "controller/cli", deps: []string{"controller/dispatch"}}},
	}
	for _, b := range bad {
		var fired bool
		for _, r := range rules {
			if r.name == b.rule && len(r.check(b.p)) > 0 {
				fired = true
			}
		}
		if !fired {
			t.Errorf("rule %s does not fire on %s importing %v%v", b.rule, b.p.path, b.p.imports, b.p.deps)
		}
	}
	// And stay quiet on what the rule allows.
	good := []pkg{
		{path: "agent/pluginhost", imports: []string{"plugins/sdk", "internal/pki"}},
		{path: "controller/cli/labcmd", imports: []string{"internal/assembly/lab"}},
		{path: "internal/assembly/lab", imports: []string{"controller", "agent"}},
		{path: "controller/cli", deps: []string{"controller/apiview", "internal/pki", "proto/gen/firebreak/operator/v1", "google.golang.org/grpc"}},
		{path: "test/e2e", imports: []string{"controller", "agent", "plugins/noop"}},
		{path: "controller/cli/pluginscmd", imports: []string{"agent/pluginhost", "controller/apiview"}},
	}
	for _, p := range good {
		for _, r := range rules {
			if v := r.check(p); len(v) > 0 {
				t.Errorf("rule %s fires on an allowed import: %v", r.name, v)
			}
		}
	}
}

// under reports whether a module-relative path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// isOurs reports whether a module-relative path names one of the module's
// packages rather than a standard or third-party one.
func isOurs(path string) bool {
	for _, top := range []string{"controller", "agent", "plugins", "internal", "proto", "test", "deploy"} {
		if under(path, top) {
			return true
		}
	}
	return false
}

// cliMayLink reports whether the base CLI package may link path.
func cliMayLink(path string) bool {
	return !isOurs(path) || path == "controller/cli" || under(path, "proto/gen") || path == "controller/apiview" || isLeaf(path) ||
		slices.Contains(cliParsers, path)
}

// isLeaf reports whether a path is an internal/ leaf library.
func isLeaf(path string) bool {
	return under(path, "internal") && !under(path, "internal/assembly")
}

// isServer reports whether p is one of the controller's server packages.
func isServer(p pkg) bool {
	return under(p.path, "controller") && !under(p.path, "controller/cli") && !under(p.path, "controller/cmd") && !isFixture(p) &&
		!slices.Contains(buildTools, p.path)
}

// isFixture reports whether p is a test fixture package.
func isFixture(p pkg) bool {
	return fixtures[p.path] || (strings.HasSuffix(filepath.Base(p.path), "test") && slices.Contains(p.imports, "testing"))
}

// forbidden lists p's direct imports that bad reports.
func forbidden(p pkg, name, why string, bad func(string) bool) []violation {
	var v []violation
	for _, imp := range p.imports {
		if bad(imp) {
			v = append(v, violation{rule: name, importer: p.path, imported: imp, why: why})
		}
	}
	return v
}

// linkedThrough names the module packages p links that import target
// directly, so a link violation says where to cut.
func linkedThrough(p pkg, target string) []string {
	var out []string
	for _, imp := range importers[target] {
		if imp == p.path || slices.Contains(p.deps, imp) {
			out = append(out, imp)
		}
	}
	if len(out) == 0 {
		out = []string{"a third-party package"}
	}
	return out
}

var loaded []pkg

// load lists every package of the module with its imports and links.
func load(t *testing.T) []pkg {
	t.Helper()
	if loaded != nil {
		return loaded
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH; the dependency rule needs go list")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "list", "-f", "{{.ImportPath}}\t{{join .Imports \" \"}}\t{{join .Deps \" \"}}", "./...")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	rel := func(s string) string {
		if s == module {
			return "."
		}
		return strings.TrimPrefix(s, module+"/")
	}
	fields := func(s string) []string {
		var out []string
		for _, f := range strings.Fields(s) {
			out = append(out, rel(f))
		}
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		parts := strings.Split(sc.Text(), "\t")
		if len(parts) != 3 {
			t.Fatalf("go list printed an unexpected line: %q", sc.Text())
		}
		p := pkg{path: rel(parts[0]), imports: fields(parts[1]), deps: fields(parts[2])}
		loaded = append(loaded, p)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, p := range loaded {
		if isFixture(p) {
			fixtures[p.path] = true
		}
		for _, imp := range p.imports {
			importers[imp] = append(importers[imp], p.path)
		}
	}
	return loaded
}
