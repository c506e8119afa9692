// Command firebreak-plugin-aws-readiness serves the aws-readiness action
// to an API worker.
package main

import (
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/plugins/awsreadiness"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() {
	a, err := awsreadiness.New(awsreadiness.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sdk.Serve(a)
}
