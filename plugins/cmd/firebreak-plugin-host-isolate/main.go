// Command firebreak-plugin-host-isolate serves the host-isolate action to an
// agent.
package main

import (
	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() { sdk.Serve(hostisolate.NewIsolate()) }
