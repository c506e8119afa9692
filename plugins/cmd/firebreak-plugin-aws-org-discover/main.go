// Command firebreak-plugin-aws-org-discover serves the aws-org-discover
// action to an API worker.
package main

import (
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/plugins/awsorg"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() {
	a, err := awsorg.New(awsorg.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sdk.Serve(a)
}
