// Command firebreak is the Firebreak controller and operator CLI.
package main

import (
	"os"

	"github.com/firebreak-ir/firebreak/controller/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
