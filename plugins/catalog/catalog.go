// Package catalog lists Firebreak's first-party actions, built in-process.
// The generator of the controller's embedded action descriptions
// (controller/actioncatalog/gen, `make catalog`) reads the descriptions
// from it, and tests use it to check the embedded descriptions and the
// built-in playbooks against the actions' real schemas, so neither can
// drift from a plugin unnoticed. The controller itself never links it.
package catalog

import (
	"context"
	"fmt"

	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/awseradicate"
	"github.com/firebreak-ir/firebreak/plugins/awsiam"
	"github.com/firebreak-ir/firebreak/plugins/awslambda"
	"github.com/firebreak-ir/firebreak/plugins/awsorg"
	"github.com/firebreak-ir/firebreak/plugins/awsreadiness"
	"github.com/firebreak-ir/firebreak/plugins/awss3"
	"github.com/firebreak-ir/firebreak/plugins/awsscope"
	"github.com/firebreak-ir/firebreak/plugins/awstrail"
	"github.com/firebreak-ir/firebreak/plugins/hostcollect"
	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
	"github.com/firebreak-ir/firebreak/plugins/noop"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sysinfo"
	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// Actions builds every first-party action.
func Actions() ([]sdk.Action, error) {
	out := []sdk.Action{
		sysinfo.New(), noop.Action{}, hostcollect.New(), hostisolate.NewIsolate(), hostisolate.NewUnisolate(),
		awsec2.NewIsolate(awsec2.Config{}), awsec2.NewUnisolate(awsec2.Config{}), awsec2.NewSnapshot(awsec2.Config{}), awsec2.NewCapture(awsec2.Config{}),
	}
	for _, mk := range []func() (sdk.Action, error){
		func() (sdk.Action, error) { return awsiam.NewContain(awsiam.Config{}) },
		func() (sdk.Action, error) { return awsiam.NewUncontain(awsiam.Config{}) },
		func() (sdk.Action, error) { return awss3.NewContain(awss3.Config{}) },
		func() (sdk.Action, error) { return awss3.NewUncontain(awss3.Config{}) },
		func() (sdk.Action, error) { return awslambda.NewContain(awslambda.Config{}) },
		func() (sdk.Action, error) { return awslambda.NewUncontain(awslambda.Config{}) },
		func() (sdk.Action, error) { return awstrail.New(awstrail.Config{}) },
		func() (sdk.Action, error) { return awsorg.New(awsorg.Config{}) },
		func() (sdk.Action, error) { return awsscope.New(awsscope.Config{}) },
		func() (sdk.Action, error) { return awsreadiness.New(awsreadiness.Config{}) },
		func() (sdk.Action, error) { return awseradicate.New(awseradicate.Config{}) },
	} {
		a, err := mk()
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// Descriptions returns every first-party action's description by name.
func Descriptions(ctx context.Context) (map[string]*pluginv1.ActionDescription, error) {
	actions, err := Actions()
	if err != nil {
		return nil, err
	}
	out := map[string]*pluginv1.ActionDescription{}
	for _, a := range actions {
		d, err := a.Describe(ctx)
		if err != nil {
			return nil, err
		}
		if err := sdk.CheckDescription(d); err != nil {
			return nil, err
		}
		if _, dup := out[d.GetName()]; dup {
			return nil, fmt.Errorf("two first-party actions are named %q", d.GetName())
		}
		out[d.GetName()] = d
	}
	return out, nil
}

// Catalog is a playbook.ActionCatalog of the first-party actions.
type Catalog map[string]*pluginv1.ActionDescription

// Lookup implements playbook.ActionCatalog.
func (c Catalog) Lookup(name string) (*pluginv1.ActionDescription, bool) {
	d, ok := c[name]
	return d, ok
}
