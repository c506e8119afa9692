package actioncatalog

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"

	"google.golang.org/protobuf/encoding/protojson"

	pluginv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/plugin/v1"
)

// DescriptionsFile is the embedded file of first-party descriptions, as
// named in this package's directory.
const DescriptionsFile = "descriptions.json"

// firstPartyJSON holds the first-party actions' descriptions, generated
// from the actions themselves by `make catalog` (go run
// ./controller/actioncatalog/gen); `make catalog-check` fails when it is
// stale. The controller embeds the descriptions instead of linking the
// actions, so its server packages never import an action or go-plugin.
//
//go:embed descriptions.json
var firstPartyJSON []byte

// FirstParty returns the first-party actions' descriptions by name, as
// embedded in the binary.
func FirstParty() (map[string]*pluginv1.ActionDescription, error) {
	return DecodeDescriptions(firstPartyJSON)
}

// FirstPartyJSON returns the embedded file as it is, for drift checks.
func FirstPartyJSON() []byte { return append([]byte(nil), firstPartyJSON...) }

// EncodeDescriptions writes descriptions as the embedded file holds them: a
// JSON array ordered by action name, each description in the protobuf JSON
// mapping with proto field names, indented, so that one change of an
// action is one readable change of the file.
func EncodeDescriptions(descs map[string]*pluginv1.ActionDescription) ([]byte, error) {
	names := make([]string, 0, len(descs))
	for n := range descs {
		names = append(names, n)
	}
	sort.Strings(names)
	list := make([]json.RawMessage, 0, len(names))
	for _, n := range names {
		if descs[n].GetName() != n {
			return nil, fmt.Errorf("the description filed as %q is named %q", n, descs[n].GetName())
		}
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(descs[n])
		if err != nil {
			return nil, fmt.Errorf("encoding the description of %q: %w", n, err)
		}
		list = append(list, b)
	}
	// protojson's spacing is deliberately unstable; re-indenting the raw
	// messages makes the file a pure function of the descriptions.
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// DecodeDescriptions reads what EncodeDescriptions writes, refusing an
// unknown field and a name given twice.
func DecodeDescriptions(b []byte) (map[string]*pluginv1.ActionDescription, error) {
	var list []json.RawMessage
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("the action descriptions are not a JSON array: %w", err)
	}
	out := make(map[string]*pluginv1.ActionDescription, len(list))
	for i, raw := range list {
		d := &pluginv1.ActionDescription{}
		if err := protojson.Unmarshal(raw, d); err != nil {
			return nil, fmt.Errorf("action description %d: %w", i, err)
		}
		if _, dup := out[d.GetName()]; dup {
			return nil, fmt.Errorf("action %q is described twice", d.GetName())
		}
		out[d.GetName()] = d
	}
	return out, nil
}
