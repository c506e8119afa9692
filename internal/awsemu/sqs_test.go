package awsemu

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

func TestSQS(t *testing.T) {
	l := newLab(t, 3)
	c := sqs.NewFromConfig(l.assumeWorker(t))
	urlOut, err := c.GetQueueUrl(ctx(t), &sqs.GetQueueUrlInput{QueueName: aws.String(LabFindingsQueue)})
	ok(t, err)
	q := urlOut.QueueUrl
	_, err = c.GetQueueUrl(ctx(t), &sqs.GetQueueUrlInput{QueueName: aws.String("nope")})
	wantCode(t, err, "AWS.SimpleQueueService.NonExistentQueue")
	var missing *sqstypes.QueueDoesNotExist
	if !errors.As(err, &missing) {
		t.Fatalf("error %T is not QueueDoesNotExist", err)
	}

	created, err := c.CreateQueue(ctx(t), &sqs.CreateQueueInput{QueueName: aws.String("scratch"), Attributes: map[string]string{"VisibilityTimeout": "10"}})
	ok(t, err)
	again, err := c.CreateQueue(ctx(t), &sqs.CreateQueueInput{QueueName: aws.String("scratch"), Attributes: map[string]string{"VisibilityTimeout": "10"}})
	ok(t, err)
	if aws.ToString(created.QueueUrl) != aws.ToString(again.QueueUrl) {
		t.Fatal("CreateQueue of an existing queue gave another URL")
	}
	_, err = c.CreateQueue(ctx(t), &sqs.CreateQueueInput{QueueName: aws.String("scratch"), Attributes: map[string]string{"VisibilityTimeout": "20"}})
	wantCode(t, err, "QueueAlreadyExists")

	// A long poll waits for the message that arrives while it waits.
	type result struct {
		out *sqs.ReceiveMessageOutput
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := c.ReceiveMessage(ctx(t), &sqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 10, MaxNumberOfMessages: 5,
			MessageAttributeNames: []string{"All"}, MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount}})
		done <- result{out, err}
	}()
	l.waitForPoll(t, LabAccountID(1), LabFindingsQueue)
	sent, err := c.SendMessage(ctx(t), &sqs.SendMessageInput{QueueUrl: q, MessageBody: aws.String(`{"detail-type":"GuardDuty Finding"}`),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"source":   {DataType: aws.String("String"), StringValue: aws.String("aws.guardduty")},
			"severity": {DataType: aws.String("Number"), StringValue: aws.String("8")},
			"blob":     {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2}},
		}})
	ok(t, err)
	r := <-done
	ok(t, r.err)
	if len(r.out.Messages) != 1 || aws.ToString(r.out.Messages[0].MessageId) != aws.ToString(sent.MessageId) ||
		len(r.out.Messages[0].MessageAttributes) != 3 || r.out.Messages[0].Attributes["ApproximateReceiveCount"] != "1" {
		t.Fatalf("received %+v", r.out.Messages)
	}
	receipt := r.out.Messages[0].ReceiptHandle

	// Hidden for the visibility timeout, then back.
	empty, err := c.ReceiveMessage(ctx(t), &sqs.ReceiveMessageInput{QueueUrl: q})
	ok(t, err)
	if len(empty.Messages) != 0 {
		t.Fatalf("message visible during its visibility timeout")
	}
	l.clock.Advance(61 * time.Second)
	back, err := c.ReceiveMessage(ctx(t), &sqs.ReceiveMessageInput{QueueUrl: q, VisibilityTimeout: 5,
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll}})
	ok(t, err)
	if len(back.Messages) != 1 || back.Messages[0].Attributes["ApproximateReceiveCount"] != "2" {
		t.Fatalf("redelivered %+v", back.Messages)
	}
	// The stale handle deletes nothing; the fresh one does.
	_, err = c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: q, ReceiptHandle: receipt})
	ok(t, err)
	_, err = c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: q, ReceiptHandle: back.Messages[0].ReceiptHandle})
	ok(t, err)
	_, err = c.DeleteMessage(ctx(t), &sqs.DeleteMessageInput{QueueUrl: q, ReceiptHandle: aws.String("garbage")})
	wantCode(t, err, "ReceiptHandleIsInvalid")
	l.clock.Advance(10 * time.Second)
	gone, err := c.ReceiveMessage(ctx(t), &sqs.ReceiveMessageInput{QueueUrl: q})
	ok(t, err)
	if len(gone.Messages) != 0 {
		t.Fatal("deleted message came back")
	}

	// Messages put in by the emulator itself, as EventBridge would.
	id, err := l.emu.SendQueueMessage(LabAccountID(1), "us-east-1", LabFindingsQueue, `{"source":"aws.guardduty"}`)
	ok(t, err)
	got, err := c.ReceiveMessage(ctx(t), &sqs.ReceiveMessageInput{QueueUrl: q, WaitTimeSeconds: 1})
	ok(t, err)
	if len(got.Messages) != 1 || aws.ToString(got.Messages[0].MessageId) != id {
		t.Fatalf("injected message %+v", got.Messages)
	}
	attrs, err := c.GetQueueAttributes(ctx(t), &sqs.GetQueueAttributesInput{QueueUrl: q, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	ok(t, err)
	if attrs.Attributes["ApproximateNumberOfMessagesNotVisible"] != "1" {
		t.Fatalf("attributes %v", attrs.Attributes)
	}
}

func TestSQSLongPollHonoursContext(t *testing.T) {
	l := newLab(t, 3)
	c := sqs.NewFromConfig(l.assumeWorker(t))
	urlOut, err := c.GetQueueUrl(ctx(t), &sqs.GetQueueUrlInput{QueueName: aws.String(LabFindingsQueue)})
	ok(t, err)
	cctx, cancel := context.WithCancel(ctx(t))
	done := make(chan error, 1)
	go func() {
		_, err := c.ReceiveMessage(cctx, &sqs.ReceiveMessageInput{QueueUrl: urlOut.QueueUrl, WaitTimeSeconds: 20})
		done <- err
	}()
	l.waitForPoll(t, LabAccountID(1), LabFindingsQueue)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("long poll after cancel: %v", err)
	}
}

// waitForPoll waits until a long poll is waiting on the queue.
func (l *lab) waitForPoll(t *testing.T, account, name string) {
	t.Helper()
	a := l.emu.account(account)
	a.mu.Lock()
	q := a.regions["us-east-1"].queues[name]
	a.mu.Unlock()
	for {
		q.mu.Lock()
		n := q.polling
		q.mu.Unlock()
		if n > 0 {
			return
		}
		select {
		case <-t.Context().Done():
			t.Fatal("no long poll started")
		case <-time.After(time.Millisecond):
		}
	}
}
