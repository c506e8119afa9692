package stsproof

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
)

// TestCheck covers the checks that need no STS: each refusal's wording,
// and the partition's host names.
func TestCheck(t *testing.T) {
	ctx := context.Background()
	creds := credentials.NewStaticCredentialsProvider("AKIAEXAMPLE000000000", "secret", "")
	now := time.Now().UTC()
	sign := func(endpoint, server string, at time.Time) *Request {
		t.Helper()
		r, err := Sign(ctx, creds, endpoint, "eu-west-1", server, at)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	unsignedServer := sign("https://sts.eu-west-1.amazonaws.com/", "ctl", now)
	unsignedServer.Headers.Set("Authorization", strings.Replace(unsignedServer.Headers.Get("Authorization"), ";x-firebreak-server-id", "", 1))
	wrongHost := sign("https://sts.eu-west-1.amazonaws.com/", "ctl", now)
	wrongHost.Headers.Set("Host", "sts.us-east-1.amazonaws.com")
	get := sign("https://sts.eu-west-1.amazonaws.com/", "ctl", now)
	get.Method = "GET"

	tests := []struct {
		name      string
		req       *Request
		partition string
		want      string
	}{
		{"regional endpoint", sign("https://sts.eu-west-1.amazonaws.com/", "ctl", now), "", ""},
		{"global endpoint", sign("https://sts.amazonaws.com/", "ctl", now), "", ""},
		{"china endpoint in the aws-cn partition", sign("https://sts.cn-north-1.amazonaws.com.cn/", "ctl", now), "aws-cn", ""},
		{"china endpoint in the aws partition", sign("https://sts.cn-north-1.amazonaws.com.cn/", "ctl", now), "", "not an STS endpoint of the aws partition"},
		{"look-alike host", sign("https://sts.eu-west-1.amazonaws.com.example.net/", "ctl", now), "", "not an STS endpoint"},
		{"plain HTTP", sign("http://sts.eu-west-1.amazonaws.com/", "ctl", now), "", "not an STS endpoint"},
		{"a port", sign("https://sts.eu-west-1.amazonaws.com:8443/", "ctl", now), "", "not an STS endpoint"},
		{"a path", sign("https://sts.eu-west-1.amazonaws.com/x", "ctl", now), "", "carries a path"},
		{"GET", get, "", "only POST"},
		{"server id not signed", unsignedServer, "", "does not cover the x-firebreak-server-id header"},
		{"Host header of another endpoint", wrongHost, "", "not its URL's host"},
		{"another server", sign("https://sts.eu-west-1.amazonaws.com/", "other", now), "", `names server "other"`},
		{"old", sign("https://sts.eu-west-1.amazonaws.com/", "ctl", now.Add(-MaxAge-time.Second)), "", "old; the limit is 5m0s"},
		{"from the future", sign("https://sts.eu-west-1.amazonaws.com/", "ctl", now.Add(MaxAge+time.Minute)), "", "in the future"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Check(tt.req, CheckConfig{ServerID: "ctl", Partition: tt.partition, Now: now})
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
}
