package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/firebreak-ir/firebreak/agent"
	"github.com/firebreak-ir/firebreak/controller/cli"
)

// notOurFlags are flags the docs name that belong to other programs.
var notOurFlags = map[string]string{
	"with-decryption":   "aws ssm get-parameter, in docs/deploy.md",
	"name":              "aws secretsmanager create-secret, in docs/deploy.md",
	"kms-key-id":        "aws secretsmanager create-secret, in docs/deploy.md",
	"secret-binary":     "aws secretsmanager create-secret, in docs/deploy.md",
	"secret-string":     "aws secretsmanager create-secret, in docs/deploy.md",
	"secret-id":         "aws secretsmanager get-secret-value, in docs/deploy.md",
	"query":             "aws secretsmanager get-secret-value, in docs/deploy.md",
	"arg":               "jq, in docs/deploy.md",
	"service-principal": "aws organizations enable-aws-service-access, in docs/aws-identity.md and docs/aws.md",
}

// docFlag matches a flag named in the docs.
var docFlag = regexp.MustCompile(`--([a-z][a-z0-9]*(?:-[a-z0-9]+)*)`)

// section is one part of a docs page, from a heading to the next.
type section struct {
	where string
	text  string
}

// readDocs returns README.md and docs/*.md cut at their headings.
func readDocs(t *testing.T) []section {
	t.Helper()
	files, err := filepath.Glob("../../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../../../README.md")
	var out []section
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(f, "../../../")
		cur := section{where: name}
		inCode := false
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "```") {
				inCode = !inCode
			}
			if !inCode && strings.HasPrefix(line, "#") {
				out = append(out, cur)
				cur = section{where: name + " " + line}
			}
			cur.text += line + "\n"
		}
		out = append(out, cur)
	}
	return out
}

// flagUse is one flag of one command.
type flagUse struct {
	command string // "firebreak lab drill", "firebreak-agent"
	flag    string
	short   string // its one-letter form, if any
}

// firebreakFlags walks the firebreak command tree: every flag of every
// command users see (hidden commands and flags are internal), the global
// ones once, on the root.
func firebreakFlags() []flagUse {
	root := cli.NewRoot(&cli.Globals{}, commands())
	var out []flagUse
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && f.Name != "help" {
				out = append(out, flagUse{c.CommandPath(), f.Name, f.Shorthand})
			}
		})
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return out
}

// agentFlags reads the flags firebreak-agent --help lists.
func agentFlags(t *testing.T) []flagUse {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	help := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(r)
		help <- b
	}()
	code := agent.Main([]string{"--help"})
	os.Stdout = stdout
	_ = w.Close()
	text := <-help
	if code != 0 {
		t.Fatalf("firebreak-agent --help exited %d", code)
	}
	_, flags, ok := bytes.Cut(text, []byte("\nFlags:\n"))
	if !ok {
		t.Fatalf("firebreak-agent --help lists no flags:\n%s", text)
	}
	var out []flagUse
	line := regexp.MustCompile(`^\s+(?:-([a-zA-Z]), )?--([a-z0-9-]+)`)
	for _, l := range strings.Split(string(flags), "\n") {
		if m := line.FindStringSubmatch(l); m != nil && m[2] != "help" && m[2] != "version" {
			out = append(out, flagUse{"firebreak-agent", m[2], m[1]})
		}
	}
	if len(out) < 10 {
		t.Fatalf("read %d agent flags from --help:\n%s", len(out), text)
	}
	return out
}

// TestEveryFlagIsDocumented: every flag of firebreak and firebreak-agent is
// named in README.md or docs/*.md in a section that names its command, so
// an operator reading about a command finds its flags there.
func TestEveryFlagIsDocumented(t *testing.T) {
	docs := readDocs(t)
	uses := append(firebreakFlags(), agentFlags(t)...)
	var missing []string
	for _, u := range uses {
		// The global flags are documented once, for every command.
		cmd := u.command
		if cmd == "firebreak" {
			cmd = ""
		}
		found := false
		for _, s := range docs {
			if strings.Contains(s.text, cmd) && (hasFlag(s.text, u.flag) || hasShort(s.text, u.short)) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, u.command+" --"+u.flag)
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("%s is not documented in a section of README.md or docs/*.md that names the command", m)
	}
}

// TestEveryDocumentedFlagExists: every --flag the docs name is a flag of
// some firebreak or firebreak-agent command, or one of notOurFlags.
func TestEveryDocumentedFlagExists(t *testing.T) {
	known := map[string]bool{}
	root := cli.NewRoot(&cli.Globals{}, commands())
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) { known[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	for _, u := range agentFlags(t) {
		known[u.flag] = true
	}
	named := map[string][]string{}
	for _, s := range readDocs(t) {
		for _, m := range docFlag.FindAllStringSubmatch(s.text, -1) {
			named[m[1]] = append(named[m[1]], s.where)
		}
	}
	for flag, where := range named {
		if known[flag] {
			continue
		}
		if _, ok := notOurFlags[flag]; ok {
			continue
		}
		t.Errorf("the docs name --%s (%s), which no firebreak or firebreak-agent command has", flag, where[0])
	}
	for flag, why := range notOurFlags {
		if known[flag] {
			t.Errorf("--%s is listed as another program's (%s) but firebreak has it: take it off the list", flag, why)
		}
		if len(named[flag]) == 0 {
			t.Errorf("--%s is listed as another program's (%s) but no doc names it: take it off the list", flag, why)
		}
	}
}

// hasShort reports whether text names -short as a flag (`-o FILE`).
func hasShort(text, short string) bool {
	return short != "" && regexp.MustCompile("(^|[\\s\\[(`])-"+regexp.QuoteMeta(short)+"[\\s\\]`]").MatchString(text)
}

// hasFlag reports whether text names --flag (not a longer flag it begins).
func hasFlag(text, flag string) bool {
	for _, m := range docFlag.FindAllStringSubmatch(text, -1) {
		if m[1] == flag {
			return true
		}
	}
	return false
}
