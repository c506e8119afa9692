// Command firebreak-plugin-aws-ec2-capture serves the aws-ec2-capture action
// to an API worker.
package main

import (
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() { sdk.Serve(awsec2.NewCapture(awsec2.Config{})) }
