// Command firebreak-agent is the Firebreak host agent and API worker.
package main

import (
	"os"

	"github.com/firebreak-ir/firebreak/agent"
)

func main() { os.Exit(agent.Main(os.Args[1:])) }
