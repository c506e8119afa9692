package agent

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/firebreak-ir/firebreak/internal/stsproof"
	agentv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/agent/v1"
)

// Join methods (--join).
const (
	JoinToken  = "token"
	JoinAWSIID = "aws-iid"
	JoinAWSSTS = "aws-sts"
)

// CheckJoin checks a --join value against the role.
func CheckJoin(join, role string) error {
	switch join {
	case "", JoinToken:
		return nil
	case JoinAWSIID:
		if role != "host" {
			return fmt.Errorf("--join aws-iid enrols host agents; a %s uses --join aws-sts or a join token", role)
		}
		return nil
	case JoinAWSSTS:
		if role != "worker" {
			return fmt.Errorf("--join aws-sts enrols workers (--role worker); a %s agent uses --join aws-iid or a join token", role)
		}
		return nil
	}
	return fmt.Errorf("--join %q is not token, aws-iid or aws-sts", join)
}

func (a *Agent) attested() bool { return a.cfg.Join == JoinAWSIID || a.cfg.Join == JoinAWSSTS }

// attest puts the agent's AWS proof into an enrollment request.
func (a *Agent) attest(ctx context.Context, ca *x509.Certificate, req *agentv1.EnrollRequest) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if a.cfg.Join == JoinAWSIID && a.cfg.IMDS != nil {
		proof, err := readIdentityDocument(ctx, a.cfg.IMDS)
		if err != nil {
			return err
		}
		req.AwsIid = proof
		return nil
	}
	awsCfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("the AWS configuration: %w", err)
	}
	if a.cfg.Join == JoinAWSIID {
		proof, err := readIdentityDocument(ctx, imds.NewFromConfig(awsCfg))
		if err != nil {
			return err
		}
		req.AwsIid = proof
		return nil
	}
	serverID := a.cfg.ServerID
	if serverID == "" {
		serverID = stsproof.ServerIDFor(ca.Raw)
	}
	region := awsCfg.Region
	if region == "" {
		region = "us-east-1"
	}
	endpoint := stsEndpoint(region)
	signed, err := stsproof.Sign(ctx, awsCfg.Credentials, endpoint, region, serverID, a.cfg.Clock())
	if err != nil {
		return err
	}
	p := &agentv1.AwsStsProof{Method: signed.Method, Url: signed.URL, Body: signed.Body}
	for k, vs := range signed.Headers {
		for _, v := range vs {
			p.Headers = append(p.Headers, &agentv1.HttpHeader{Name: k, Value: v})
		}
	}
	req.AwsSts = p
	return nil
}

// stsEndpoint is where the worker signs its GetCallerIdentity for: the
// SDK's endpoint override for STS when set (AWS_ENDPOINT_URL_STS, then
// AWS_ENDPOINT_URL), else the regional endpoint. The controller sends the
// request there itself, and refuses any URL that is not its allowed STS.
func stsEndpoint(region string) string {
	for _, env := range []string{"AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"} {
		if v := os.Getenv(env); v != "" {
			if v[len(v)-1] != '/' {
				v += "/"
			}
			return v
		}
	}
	return stsproof.Endpoint(region)
}

// imdsDynamic is the IMDS call the agent makes (IMDSv2: the SDK client
// fetches a session token first).
type imdsDynamic interface {
	GetDynamicData(ctx context.Context, in *imds.GetDynamicDataInput, optFns ...func(*imds.Options)) (*imds.GetDynamicDataOutput, error)
}

// readIdentityDocument reads the document and its rsa2048 signature.
func readIdentityDocument(ctx context.Context, c imdsDynamic) (*agentv1.AwsIidProof, error) {
	get := func(path string) ([]byte, error) {
		out, err := c.GetDynamicData(ctx, &imds.GetDynamicDataInput{Path: path})
		if err != nil {
			return nil, fmt.Errorf("reading %s from the instance metadata service (IMDSv2; AWS_EC2_METADATA_SERVICE_ENDPOINT overrides it): %w", path, err)
		}
		defer out.Content.Close()
		return io.ReadAll(io.LimitReader(out.Content, 64<<10))
	}
	doc, err := get("instance-identity/document")
	if err != nil {
		return nil, err
	}
	sig, err := get("instance-identity/rsa2048")
	if err != nil {
		return nil, err
	}
	return &agentv1.AwsIidProof{Document: doc, Rsa2048: sig}, nil
}
