// Package playbooktest provides an in-memory action catalogue for tests of
// playbooks, describing the first-party response actions.
package playbooktest

import (
	"maps"
	"slices"
	"sync"

	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Catalog is an in-memory playbook.ActionCatalog. It is safe for concurrent
// use.
type Catalog struct {
	mu      sync.RWMutex
	actions map[string]*pluginv1.ActionDescription
}

// NewCatalog returns a catalogue holding the given descriptions.
func NewCatalog(descs ...*pluginv1.ActionDescription) *Catalog {
	c := &Catalog{actions: map[string]*pluginv1.ActionDescription{}}
	for _, d := range descs {
		c.Add(d)
	}
	return c
}

// Add adds or replaces an action description.
func (c *Catalog) Add(d *pluginv1.ActionDescription) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.actions[d.GetName()] = d
}

// Remove deletes an action.
func (c *Catalog) Remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.actions, name)
}

// Lookup returns the named action's description.
func (c *Catalog) Lookup(name string) (*pluginv1.ActionDescription, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	d, ok := c.actions[name]
	return d, ok
}

// Names returns the action names, sorted.
func (c *Catalog) Names() []string {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Sorted(maps.Keys(c.actions))
}

// Param types, short for the schemas below.
const (
	str      = pluginv1.ParamType_PARAM_TYPE_STRING
	integer  = pluginv1.ParamType_PARAM_TYPE_INT
	boolean  = pluginv1.ParamType_PARAM_TYPE_BOOL
	list     = pluginv1.ParamType_PARAM_TYPE_STRING_LIST
	service  = pluginv1.Domain_DOMAIN_SERVICE
	inGuest  = pluginv1.Domain_DOMAIN_INFRASTRUCTURE
	required = true
)

func p(name string, t pluginv1.ParamType, req bool, allowed ...string) *pluginv1.ParamSpec {
	return &pluginv1.ParamSpec{Name: name, Type: t, Required: req, Allowed: allowed}
}

func action(name string, domain pluginv1.Domain, destructive bool, rollback string, params ...*pluginv1.ParamSpec) *pluginv1.ActionDescription {
	roles := []string{"worker"}
	if domain == inGuest {
		roles = []string{"host"}
	}
	return &pluginv1.ActionDescription{
		Name: name, Version: "1.0.0", Domain: domain, Params: params,
		Destructive: destructive, RollbackAction: rollback, Roles: roles,
	}
}

// FirstParty returns a catalogue of the first-party actions, with the
// parameter schemas their plugins describe.
func FirstParty() *Catalog {
	return NewCatalog(
		action("aws-ec2-capture", service, false, "",
			p("instance_id", str, required), p("account", str, false), p("region", str, false), p("case_id", str, false)),
		action("aws-ebs-snapshot", service, false, "",
			p("instance_id", str, required), p("account", str, false), p("region", str, false), p("case_id", str, false),
			p("kms_key_id", str, false), p("share_with_account", str, false)),
		action("aws-ec2-isolate", service, true, "aws-ec2-unisolate",
			p("instance_id", str, required), p("account", str, false), p("region", str, false), p("case_id", str, false),
			p("allow_cidrs", list, false), p("revoke_instance_profile", boolean, false)),
		action("aws-ec2-unisolate", service, true, "aws-ec2-isolate",
			p("instance_id", str, required), p("account", str, false), p("region", str, false), p("rollback_record", str, false)),
		action("host-isolate", inGuest, true, "host-unisolate",
			p("allow", list, false), p("allow_dhcp", boolean, false), p("reason", str, false)),
		action("host-unisolate", inGuest, true, "host-isolate"),
		action("host-collect", inGuest, false, "",
			p("profile", str, false, "triage", "full"), p("artifacts", list, false), p("paths", list, false),
			p("pid", integer, false), p("max_bytes", integer, false)),
		action("aws-iam-contain", service, true, "aws-iam-uncontain",
			p("access_key_id", str, false), p("user", str, false), p("role", str, false),
			p("delete_login_profile", boolean, false), p("deny_all", boolean, false), p("revoke_sessions", boolean, false)),
		action("aws-iam-uncontain", service, false, "",
			p("rollback_record", str, false)),
		action("aws-s3-contain", service, true, "aws-s3-uncontain",
			p("bucket", str, required), p("allowed_principals", list, false)),
		action("aws-s3-uncontain", service, false, "",
			p("bucket", str, required), p("rollback_record", str, false)),
		action("aws-lambda-contain", service, true, "aws-lambda-uncontain",
			p("function_name", str, required)),
		action("aws-lambda-uncontain", service, false, "",
			p("function_name", str, required), p("rollback_record", str, false)),
		action("aws-cloudtrail-lookup", service, false, "",
			p("access_key_id", str, false), p("user", str, false), p("role_session", str, false), p("resource", str, false),
			p("start", str, false), p("end", str, false), p("regions", list, false)),
	)
}
