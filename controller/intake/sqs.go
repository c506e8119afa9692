package intake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// SQSAPI is the part of the SQS client the poller uses.
type SQSAPI interface {
	// ReceiveMessage long-polls the queue.
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	// DeleteMessage removes a processed message.
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
}

// SQSClientFactory builds the SQS client for a queue.
type SQSClientFactory func(ctx context.Context, queueURL string) (SQSAPI, error)

var queueRegionRe = regexp.MustCompile(`^sqs\.([a-z]{2}(-[a-z]+)+-[0-9]{1,2})\.amazonaws\.com(\.cn)?$`)

// NewSQSClient builds an SQS client from the SDK's standard environment
// (AWS_REGION, AWS_ENDPOINT_URL, profiles, instance credentials). Without a
// configured region it takes the region from an AWS queue URL.
func NewSQSClient(ctx context.Context, queueURL string) (SQSAPI, error) {
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration for SQS: %w", err)
	}
	if cfg.Region == "" {
		if u, err := url.Parse(queueURL); err == nil {
			if m := queueRegionRe.FindStringSubmatch(u.Hostname()); m != nil {
				cfg.Region = m[1]
			}
		}
	}
	if cfg.Region == "" {
		return nil, fmt.Errorf("no AWS region for the SQS queue %s: set AWS_REGION", queueURL)
	}
	return sqs.NewFromConfig(cfg), nil
}

// SQSConfig configures an SQSPoller.
type SQSConfig struct {
	// QueueURL is the queue EventBridge delivers findings to.
	QueueURL string
	// Client is the SQS client.
	Client SQSAPI
	// Intake takes the findings.
	Intake *Intake
	// WaitTime is the long-poll wait (default 20s, SQS's maximum).
	WaitTime time.Duration
	// Backoff is the first wait after a failed receive (default 1s,
	// doubling to a minute).
	Backoff time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// CheckAndSetDefaults names missing dependencies and sets defaults.
func (c *SQSConfig) CheckAndSetDefaults() error {
	var missing []string
	if c.QueueURL == "" {
		missing = append(missing, "QueueURL")
	}
	if c.Client == nil {
		missing = append(missing, "Client")
	}
	if c.Intake == nil {
		missing = append(missing, "Intake")
	}
	if len(missing) > 0 {
		return fmt.Errorf("intake: SQS poller missing %v", missing)
	}
	if c.WaitTime == 0 {
		c.WaitTime = 20 * time.Second
	}
	if c.Backoff == 0 {
		c.Backoff = time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// SQSPoller long-polls an SQS queue and takes every message's event in.
// A message is deleted once its findings are recorded, or when its event is
// refused (it could never be taken; the refusal is audited); a message that
// failed for a passing reason stays, and SQS delivers it again after its
// visibility timeout (or moves it to the queue's dead-letter queue).
type SQSPoller struct {
	cfg SQSConfig
}

// NewSQSPoller returns a poller.
func NewSQSPoller(cfg SQSConfig) (*SQSPoller, error) {
	if err := cfg.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	return &SQSPoller{cfg: cfg}, nil
}

// Run polls until ctx ends.
func (p *SQSPoller) Run(ctx context.Context) error {
	backoff := p.cfg.Backoff
	p.cfg.Logger.Info("polling SQS for findings", "queue", p.cfg.QueueURL)
	for ctx.Err() == nil {
		_, err := p.Poll(ctx)
		if err == nil {
			backoff = p.cfg.Backoff
			continue
		}
		if ctx.Err() != nil {
			break
		}
		p.cfg.Logger.Warn("receiving from SQS failed; retrying", "queue", p.cfg.QueueURL, "error", err, "in", backoff)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Minute)
	}
	return nil
}

// Poll receives once (waiting up to WaitTime) and processes what came; it
// returns how many messages were deleted.
func (p *SQSPoller) Poll(ctx context.Context) (int, error) {
	out, err := p.cfg.Client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:            aws.String(p.cfg.QueueURL),
		MaxNumberOfMessages: 10,
		WaitTimeSeconds:     int32(p.cfg.WaitTime / time.Second),
	})
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, m := range out.Messages {
		body := unwrapSNS([]byte(aws.ToString(m.Body)))
		outcomes, err := p.cfg.Intake.Submit(ctx, "intake/sqs", body)
		var ee *EventError
		switch {
		case errors.As(err, &ee):
			p.cfg.Logger.Warn("an SQS message's event was refused; deleting it", "queue", p.cfg.QueueURL, "message", aws.ToString(m.MessageId), "reason", ee.Error())
		case err != nil:
			p.cfg.Logger.Error("recording an SQS message's findings failed; it will be delivered again", "message", aws.ToString(m.MessageId), "error", err)
			continue
		default:
			p.cfg.Logger.Info("took findings from SQS", "message", aws.ToString(m.MessageId), "findings", len(outcomes))
		}
		if _, err := p.cfg.Client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(p.cfg.QueueURL), ReceiptHandle: m.ReceiptHandle}); err != nil {
			// The findings are recorded; a redelivery is a duplicate and is
			// recognised as one.
			p.cfg.Logger.Warn("deleting an SQS message failed", "message", aws.ToString(m.MessageId), "error", err)
			continue
		}
		deleted++
	}
	return deleted, nil
}

// unwrapSNS returns the event inside an SNS notification (EventBridge → SNS
// → SQS), or the body itself.
func unwrapSNS(body []byte) []byte {
	var n struct {
		Type    string `json:"Type"`
		Message string `json:"Message"`
	}
	if json.Unmarshal(body, &n) == nil && n.Type == "Notification" && n.Message != "" {
		return []byte(n.Message)
	}
	return body
}
