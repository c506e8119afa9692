// Command firebreak-plugin-aws-iam-contain serves the aws-iam-contain action to an API
// worker.
package main

import (
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/plugins/awsiam"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() {
	a, err := awsiam.NewContain(awsiam.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sdk.Serve(a)
}
