package playbookrun

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/firebreak-ir/firebreak/controller/playbook"
	"github.com/firebreak-ir/firebreak/controller/playbook/library"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// SourceBuiltIn is the source of the playbooks embedded in the binary.
const SourceBuiltIn = "built-in"

// Library is the set of playbooks the controller can run: the built-in
// ones and the files of a playbook directory, read afresh on every lookup
// so that a new or edited file needs no restart. A file's playbook takes
// the place of a built-in one of the same name.
type Library struct {
	// Dir is the playbook directory; empty means built-in playbooks only.
	Dir string
	// BuiltIn are the built-in playbooks by name; nil means the ones in
	// controller/playbook/library.
	BuiltIn map[string][]byte
}

// Entry is one playbook of the library.
type Entry struct {
	// Name is the playbook's name.
	Name string
	// Source is "built-in" or the file's path.
	Source string
	// Filename is the name used in error positions.
	Filename string
	// Data is the file's content.
	Data []byte
	// ParseErr is set when the file does not parse.
	ParseErr error
	// Playbook is the parsed playbook, when it parses.
	Playbook *playbook.Playbook
}

// ErrUnknownPlaybook is returned for a name the library does not hold.
var ErrUnknownPlaybook = errors.New("unknown playbook")

// List returns every playbook, ordered by name.
func (l *Library) List() ([]*Entry, error) {
	byName := map[string]*Entry{}
	builtIn := l.BuiltIn
	if builtIn == nil {
		builtIn = library.All()
	}
	for name, data := range builtIn {
		byName[name] = parseEntry(name, SourceBuiltIn, name+".yaml", data)
	}
	if l.Dir != "" {
		files, err := os.ReadDir(l.Dir)
		if err != nil {
			return nil, fmt.Errorf("reading the playbook directory %s: %w", l.Dir, err)
		}
		for _, f := range files {
			ext := filepath.Ext(f.Name())
			if f.IsDir() || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			path := filepath.Join(l.Dir, f.Name())
			info, err := f.Info()
			if err != nil {
				continue
			}
			var data []byte
			if info.Size() > playbook.MaxFileSize {
				data = make([]byte, playbook.MaxFileSize+1)
			} else if data, err = os.ReadFile(path); err != nil {
				return nil, fmt.Errorf("reading playbook %s: %w", path, err)
			}
			e := parseEntry(strings.TrimSuffix(f.Name(), ext), path, f.Name(), data)
			byName[e.Name] = e
		}
	}
	out := make([]*Entry, 0, len(byName))
	for _, e := range byName {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func parseEntry(stem, source, filename string, data []byte) *Entry {
	e := &Entry{Name: stem, Source: source, Filename: filename, Data: data}
	pb, err := playbook.Parse(filename, data)
	if err != nil {
		e.ParseErr = err
		return e
	}
	e.Playbook = pb
	if pb.Metadata.Name != "" {
		e.Name = pb.Metadata.Name
	}
	return e
}

// Get returns the named playbook.
func (l *Library) Get(name string) (*Entry, error) {
	all, err := l.List()
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(all))
	for _, e := range all {
		if e.Name == name {
			return e, nil
		}
		names = append(names, e.Name)
	}
	return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownPlaybook, name, strings.Join(names, ", "))
}

// Catalog is a playbook.ActionCatalog of fixed descriptions.
type Catalog map[string]*pluginv1.ActionDescription

// Lookup implements playbook.ActionCatalog.
func (c Catalog) Lookup(name string) (*pluginv1.ActionDescription, bool) {
	d, ok := c[name]
	return d, ok
}

// ActionLister lists the controller's action catalogue; *operator.Service
// satisfies it.
type ActionLister interface {
	// ListActions returns the catalogue's trusted descriptions, each with
	// the number of agents that offer it at that description.
	ListActions(ctx context.Context, req *operatorv1.ListActionsRequest) (*operatorv1.ListActionsResponse, error)
}

// FleetCatalog returns, as a playbook catalogue, the actions of the
// controller's trusted catalogue that some agent offers at the catalogue's
// description. Known actions (the first-party ones) fill in what no agent
// offers right now: a playbook that names one is valid, and its step fails
// at run time when no target offers it.
//
// Security-critical: every description comes from the controller's
// catalogue; what an agent reports about an action never shapes a
// playbook's validation or its parameters.
func FleetCatalog(ctx context.Context, l ActionLister, known Catalog) (Catalog, error) {
	resp, err := l.ListActions(ctx, &operatorv1.ListActionsRequest{})
	if err != nil {
		return nil, fmt.Errorf("listing the fleet's actions: %w", err)
	}
	c := Catalog{}
	for name, d := range known {
		c[name] = d
	}
	for _, a := range resp.GetActions() {
		if a.GetAgents() > 0 {
			c[a.GetDescription().GetName()] = a.GetDescription()
		}
	}
	return c, nil
}
