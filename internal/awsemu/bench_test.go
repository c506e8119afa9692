package awsemu

import (
	"net/http"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// BenchmarkConcurrentIsolation measures the emulator under the load of the
// isolation benchmark: a security group swap of every instance of ten
// accounts at once, through the real SDK and responder sessions. It reports
// calls per second; each call takes at least Config.MinResponseTime.
func BenchmarkConcurrentIsolation(b *testing.B) {
	l := newLabFrom(b, Lab{Accounts: 12, InstancesPerAccount: 10}.Seed(), false)
	type account struct {
		c     *ec2.Client
		enis  []string
		group string
	}
	var accounts []account
	// Enough idle connections that the figure measures the emulator, not
	// the client dialing.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
	for member := 2; member < 12; member++ {
		cfg := l.assumeResponder(b, member)
		cfg.HTTPClient = client
		c := ec2.NewFromConfig(cfg)
		out, err := c.DescribeInstances(b.Context(), &ec2.DescribeInstancesInput{})
		ok(b, err)
		a := account{c: c, group: groupID(member, "worker")}
		for _, r := range out.Reservations {
			a.enis = append(a.enis, aws.ToString(r.Instances[0].NetworkInterfaces[0].NetworkInterfaceId))
		}
		accounts = append(accounts, a)
	}
	calls := 0
	for b.Loop() {
		var wg sync.WaitGroup
		for _, a := range accounts {
			for _, eni := range a.enis {
				calls++
				wg.Go(func() {
					_, err := a.c.ModifyNetworkInterfaceAttribute(b.Context(), &ec2.ModifyNetworkInterfaceAttributeInput{
						NetworkInterfaceId: aws.String(eni), Groups: []string{a.group}})
					if err != nil {
						b.Error(err)
					}
				})
			}
		}
		wg.Wait()
	}
	b.ReportMetric(float64(calls)/b.Elapsed().Seconds(), "calls/s")
}
