// Package actioncatalog is the controller's trusted catalogue of response
// actions: for each action name, the one description (parameter schema,
// defaults, destructive flag, rollback, roles) the controller plans runs,
// asks for approvals and validates playbooks with.
//
// Security-critical: an agent never decides what an action is. An agent
// only reports which actions it can run; the controller compares each
// reported description with the catalogue's and refuses the agent as a
// target of any action it describes differently, or that the catalogue does
// not hold.
package actioncatalog

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/firebreak-ir/firebreak/internal/actionschema"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Sources of catalogue entries.
const (
	// SourceFirstParty marks the actions built into the controller.
	SourceFirstParty = "first-party"
	// SourceRegistered marks actions an administrator registered.
	SourceRegistered = "registered"
)

// Entry is one catalogued action.
type Entry struct {
	// Description is the trusted description. Callers must not modify it.
	Description *pluginv1.ActionDescription
	// Digest is the hex SHA-256 of the description's deterministic proto
	// encoding.
	Digest string
	// Source is SourceFirstParty or SourceRegistered.
	Source string
}

// Catalogue holds the trusted descriptions by action name. It is safe for
// concurrent use.
type Catalogue struct {
	mu     sync.RWMutex
	byName map[string]*Entry
}

// New returns a catalogue of the given first-party descriptions.
func New(firstParty map[string]*pluginv1.ActionDescription) (*Catalogue, error) {
	c := &Catalogue{byName: map[string]*Entry{}}
	names := make([]string, 0, len(firstParty))
	for n := range firstParty {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		d := firstParty[n]
		if d.GetName() != n {
			return nil, fmt.Errorf("action catalogue: the description filed as %q is named %q", n, d.GetName())
		}
		if err := c.Register(d, SourceFirstParty); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Register adds a trusted description. Registering the same description
// again is a no-op; a different description of a catalogued name is
// refused, so a registration can never redefine an action.
func (c *Catalogue) Register(d *pluginv1.ActionDescription, source string) error {
	if err := actionschema.CheckDescription(d); err != nil {
		return fmt.Errorf("action catalogue: %w", err)
	}
	d = proto.Clone(d).(*pluginv1.ActionDescription)
	e := &Entry{Description: d, Digest: Digest(d), Source: source}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur := c.byName[d.GetName()]; cur != nil {
		if cur.Digest == e.Digest {
			return nil
		}
		// Security-critical: a catalogued action keeps its description.
		return fmt.Errorf("action catalogue: %q is already catalogued (%s) with another description (%s)",
			d.GetName(), cur.Source, strings.Join(Differences(cur.Description, d), ", "))
	}
	c.byName[d.GetName()] = e
	return nil
}

// Lookup returns the trusted description of an action.
func (c *Catalogue) Lookup(name string) (*pluginv1.ActionDescription, bool) {
	if e := c.Entry(name); e != nil {
		return e.Description, true
	}
	return nil, false
}

// Entry returns the catalogue entry of an action, or nil.
func (c *Catalogue) Entry(name string) *Entry {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byName[name]
}

// Entries returns every entry, ordered by action name.
func (c *Catalogue) Entries() []*Entry {
	c.mu.RLock()
	out := make([]*Entry, 0, len(c.byName))
	for _, e := range c.byName {
		out = append(out, e)
	}
	c.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Description.GetName() < out[j].Description.GetName() })
	return out
}

// Len returns the number of catalogued actions.
func (c *Catalogue) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byName)
}

// Descriptions returns every trusted description by name.
func (c *Catalogue) Descriptions() map[string]*pluginv1.ActionDescription {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]*pluginv1.ActionDescription, len(c.byName))
	for n, e := range c.byName {
		out[n] = e.Description
	}
	return out
}

// Digest is the hex SHA-256 of a description's deterministic encoding.
func Digest(d *pluginv1.ActionDescription) string {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
	if err != nil {
		// A description that cannot be encoded matches nothing.
		return "unencodable"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Refusal is an action an agent reported that the controller will not send
// it: uncatalogued, or described differently from the catalogue.
type Refusal struct {
	// Action is the action's name as the agent reported it.
	Action string `json:"action"`
	// Reason says why, for operators.
	Reason string `json:"reason"`
	// Differences names the description fields that differ from the
	// catalogue's (e.g. "version", "destructive", "params.allow").
	Differences []string `json:"differences,omitempty"`
}

// Review compares the plugins an agent of the given role (from its
// certificate and enrollment, never its hello) reported with the catalogue.
// It returns the names of the actions the agent may be sent (reported with
// the catalogue's exact description, for a role the catalogue runs it on),
// and a refusal for every other one.
func (c *Catalogue) Review(role string, plugins []*agentv1.PluginInfo) (accepted map[string]bool, refused []Refusal) {
	accepted = map[string]bool{}
	seen := map[string]bool{}
	for _, p := range plugins {
		d := p.GetDescription()
		name := d.GetName()
		if seen[name] {
			// Security-critical: two descriptions of one name leave the
			// agent's real behaviour unknown.
			delete(accepted, name)
			refused = append(refused, Refusal{Action: name, Reason: "reported more than once"})
			continue
		}
		seen[name] = true
		e := c.Entry(name)
		if e == nil {
			refused = append(refused, Refusal{Action: name, Reason: "not in the controller's action catalogue"})
			continue
		}
		// Security-critical: only the catalogue's exact description makes
		// the agent a target; anything else is refused, never merged.
		if !proto.Equal(e.Description, d) {
			refused = append(refused, Refusal{Action: name, Reason: "described differently from the controller's action catalogue",
				Differences: Differences(e.Description, d)})
			continue
		}
		// Security-critical: a host agent that claims a worker action (or
		// the reverse) is not sent it, whatever it reports.
		if roles := e.Description.GetRoles(); len(roles) > 0 && !slices.Contains(roles, role) {
			refused = append(refused, Refusal{Action: name, Reason: fmt.Sprintf("the catalogue runs %s on %s agents; this agent is enrolled as %s",
				name, strings.Join(roles, " and "), role)})
			continue
		}
		accepted[name] = true
	}
	sort.SliceStable(refused, func(i, j int) bool { return refused[i].Action < refused[j].Action })
	return accepted, refused
}

// Differences names the fields in which got differs from want: top-level
// description fields by their proto name, and parameters as
// "params.NAME" (a parameter only one side has included).
func Differences(want, got *pluginv1.ActionDescription) []string {
	var out []string
	wm, gm := want.ProtoReflect(), got.ProtoReflect()
	fields := wm.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.Name() == "params" {
			continue
		}
		if !fieldEqual(wm, gm, fd) {
			out = append(out, string(fd.Name()))
		}
	}
	wantP, gotP := paramsByName(want), paramsByName(got)
	var names []string
	for n := range wantP {
		names = append(names, n)
	}
	for n := range gotP {
		if _, ok := wantP[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if !proto.Equal(wantP[n], gotP[n]) {
			out = append(out, "params."+n)
		}
	}
	if len(out) == 0 && !proto.Equal(want, got) {
		// Same parameters by name, in another order.
		out = append(out, "params")
	}
	return out
}

func fieldEqual(a, b protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
	x, y := a.New(), b.New()
	if a.Has(fd) {
		x.Set(fd, a.Get(fd))
	}
	if b.Has(fd) {
		y.Set(fd, b.Get(fd))
	}
	return proto.Equal(x.Interface(), y.Interface())
}

func paramsByName(d *pluginv1.ActionDescription) map[string]*pluginv1.ParamSpec {
	out := map[string]*pluginv1.ParamSpec{}
	for _, p := range d.GetParams() {
		if _, dup := out[p.GetName()]; !dup {
			out[p.GetName()] = p
		}
	}
	return out
}
