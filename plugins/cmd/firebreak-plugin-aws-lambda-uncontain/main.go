// Command firebreak-plugin-aws-lambda-uncontain serves the aws-lambda-uncontain action to an API
// worker.
package main

import (
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/plugins/awslambda"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() {
	a, err := awslambda.NewUncontain(awslambda.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sdk.Serve(a)
}
