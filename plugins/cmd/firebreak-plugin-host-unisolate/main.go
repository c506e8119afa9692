// Command firebreak-plugin-host-unisolate serves the host-unisolate action to
// an agent.
package main

import (
	"github.com/firebreak-ir/firebreak/plugins/hostisolate"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() { sdk.Serve(hostisolate.NewUnisolate()) }
