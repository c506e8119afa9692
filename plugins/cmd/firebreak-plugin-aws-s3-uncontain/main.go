// Command firebreak-plugin-aws-s3-uncontain serves the aws-s3-uncontain action to an API
// worker.
package main

import (
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/plugins/awss3"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() {
	a, err := awss3.NewUncontain(awss3.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sdk.Serve(a)
}
