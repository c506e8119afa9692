// Command firebreak-plugin-aws-eradicate serves the aws-eradicate action to
// an API worker.
package main

import (
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/plugins/awseradicate"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() {
	a, err := awseradicate.New(awseradicate.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sdk.Serve(a)
}
