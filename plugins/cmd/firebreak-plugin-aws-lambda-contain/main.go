// Command firebreak-plugin-aws-lambda-contain serves the aws-lambda-contain action to an API
// worker.
package main

import (
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/plugins/awslambda"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() {
	a, err := awslambda.NewContain(awslambda.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sdk.Serve(a)
}
