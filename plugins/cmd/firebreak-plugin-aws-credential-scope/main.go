// Command firebreak-plugin-aws-credential-scope serves the
// aws-credential-scope action to an API worker.
package main

import (
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/plugins/awsscope"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() {
	a, err := awsscope.New(awsscope.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sdk.Serve(a)
}
