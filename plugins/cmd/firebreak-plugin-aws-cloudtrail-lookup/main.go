// Command firebreak-plugin-aws-cloudtrail-lookup serves the
// aws-cloudtrail-lookup action to an API worker.
package main

import (
	"fmt"
	"os"

	"github.com/firebreak-ir/firebreak/plugins/awstrail"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() {
	a, err := awstrail.New(awstrail.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sdk.Serve(a)
}
