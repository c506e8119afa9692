// Command firebreak-plugin-host-collect serves the host-collect action to an agent.
package main

import (
	"github.com/firebreak-ir/firebreak/plugins/hostcollect"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() { sdk.Serve(hostcollect.New()) }
