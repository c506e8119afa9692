// Command firebreak-plugin-aws-ec2-unisolate serves the aws-ec2-unisolate
// action to an API worker.
package main

import (
	"github.com/firebreak-ir/firebreak/plugins/awsec2"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

func main() { sdk.Serve(awsec2.NewUnisolate(awsec2.Config{})) }
