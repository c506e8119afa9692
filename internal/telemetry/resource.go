package telemetry

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
)

// newResource builds the process's resource. Later sources win: the
// service's defaults, the host and process detectors, the caller's
// attributes, EC2's facts, then OTEL_RESOURCE_ATTRIBUTES and
// OTEL_SERVICE_NAME. The process's command line is left out on purpose: an
// agent's may carry a join token.
func newResource(ctx context.Context, cfg Config) *resource.Resource {
	base := []attribute.KeyValue{attribute.String("service.name", cfg.Service)}
	if cfg.Version != "" {
		base = append(base, attribute.String("service.version", cfg.Version))
	}
	opts := []resource.Option{
		resource.WithAttributes(base...),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithHostID(),
		resource.WithOSType(),
		resource.WithProcessPID(),
		resource.WithProcessExecutableName(),
		resource.WithProcessExecutablePath(),
		resource.WithProcessOwner(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		resource.WithAttributes(cfg.Attributes...),
	}
	if cfg.DetectEC2 {
		opts = append(opts, resource.WithDetectors(ec2Detector{timeout: cfg.EC2Timeout}))
	}
	opts = append(opts, resource.WithFromEnv())
	res, err := resource.New(ctx, opts...)
	if err != nil {
		// A partial resource is still the best description there is.
		slog.Debug("some resource attributes could not be detected", "error", err)
	}
	if res == nil {
		res = resource.NewSchemaless(base...)
	}
	return res
}

// ec2Detector reads the instance identity document over IMDSv2. It asks
// only where a metadata service can answer (an EC2 machine by its DMI
// vendor, or an explicit AWS_EC2_METADATA_SERVICE_ENDPOINT such as the lab's
// emulator), so start-up elsewhere pays nothing, and never waits longer
// than its timeout.
type ec2Detector struct{ timeout time.Duration }

// Detect implements resource.Detector.
func (d ec2Detector) Detect(ctx context.Context) (*resource.Resource, error) {
	if strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true") || !mayBeEC2() {
		return resource.Empty(), nil
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c := imds.New(imds.Options{Endpoint: os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")}, func(o *imds.Options) {
		o.Retryer = aws.NopRetryer{}
	})
	doc, err := c.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		// Not on EC2 after all, or the service is slow: no cloud facts.
		return resource.Empty(), nil
	}
	return resource.NewSchemaless(
		attribute.String("cloud.provider", "aws"),
		attribute.String("cloud.platform", "aws_ec2"),
		attribute.String("cloud.account.id", doc.AccountID),
		attribute.String("cloud.region", doc.Region),
		attribute.String("cloud.availability_zone", doc.AvailabilityZone),
		attribute.String("host.id", doc.InstanceID),
		attribute.String("host.type", doc.InstanceType),
		attribute.String("host.image.id", doc.ImageID),
	), nil
}

// mayBeEC2 is the cheap test before any network call.
func mayBeEC2() bool {
	if os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT") != "" {
		return true
	}
	for _, f := range []string{"/sys/class/dmi/id/sys_vendor", "/sys/class/dmi/id/board_vendor"} {
		if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "Amazon EC2") {
			return true
		}
	}
	if b, err := os.ReadFile("/sys/hypervisor/uuid"); err == nil && strings.HasPrefix(strings.ToLower(string(b)), "ec2") {
		return true
	}
	return false
}
