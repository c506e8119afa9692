// Command firebreak-plugin-aws-ebs-snapshot serves the aws-ebs-snapshot
// action to an API worker.
package main

import (
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() { sdk.Serve(awsec2.NewSnapshot(awsec2.Config{})) }
