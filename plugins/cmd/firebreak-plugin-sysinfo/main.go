// Command firebreak-plugin-sysinfo serves the sysinfo action to an agent.
package main

import (
	"github.com/firebreak-ir/firebreak/plugins/sdk"
	"github.com/firebreak-ir/firebreak/plugins/sysinfo"
)

func main() { sdk.Serve(sysinfo.New()) }
