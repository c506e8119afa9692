// Command firebreak-plugin-noop serves the noop action to an agent.
package main

import (
	"github.com/firebreak-ir/firebreak/plugins/noop"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() { sdk.Serve(noop.Action{}) }
