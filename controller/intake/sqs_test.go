package intake_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/intake"
	"github.com/firebreak-ir/firebreak/internal/awsemu"
	"github.com/firebreak-ir/firebreak/plugins/awstest"
)

// workerSQS is an SQS client with the lab worker role's credentials, as a
// controller in the security account polls its findings queue.
func workerSQS(t *testing.T, lab *awstest.Lab) *sqs.Client {
	t.Helper()
	k := lab.ControllerKey(t)
	out, err := lab.STS(k.ID, k.Secret, "").AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn:         aws.String("arn:aws:iam::" + awstest.SecurityAccount() + ":role/" + awsemu.LabWorkerRole),
		RoleSessionName: aws.String("firebreak-controller"),
	})
	if err != nil {
		t.Fatalf("assuming the worker role: %v", err)
	}
	c := out.Credentials
	return sqs.New(sqs.Options{Region: awstest.Region, BaseEndpoint: aws.String(lab.Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))})
}

func TestSQSPollerTakesFindingsAndDeletesMessages(t *testing.T) {
	lab := awstest.Start(t, 3)
	client := workerSQS(t, lab)
	ctx := context.Background()
	q, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(awsemu.LabFindingsQueue)})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, nil)
	p, err := intake.NewSQSPoller(intake.SQSConfig{QueueURL: aws.ToString(q.QueueUrl), Client: client, Intake: e.c.Intake, WaitTime: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	send := func(body string) {
		t.Helper()
		if _, err := lab.Emu.SendQueueMessage(awstest.SecurityAccount(), awstest.Region, awsemu.LabFindingsQueue, body); err != nil {
			t.Fatal(err)
		}
	}
	event := string(sample(t, "guardduty-ssh-bruteforce.json"))
	// EventBridge → SQS delivers the event as the body; EventBridge → SNS →
	// SQS wraps it in a notification.
	send(event)
	wrapped, _ := json.Marshal(map[string]string{"Type": "Notification", "Message": string(sample(t, "guardduty-bitcointool-dns.json"))})
	send(string(wrapped))
	send(`{"detail-type": "not a finding"}`)

	deleted := 0
	deadline := time.Now().Add(30 * time.Second)
	for deleted < 3 && time.Now().Before(deadline) {
		n, err := p.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		deleted += n
	}
	if deleted != 3 {
		t.Fatalf("%d messages deleted, want 3 (two taken, one refused)", deleted)
	}
	cs, err := e.c.Cases.List(ctx, cases.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("%d cases, want one per finding", len(cs))
	}
	for _, c := range cs {
		if !strings.HasPrefix(c.Resource, "instance/") || c.CreatedBy != "intake/sqs" {
			t.Errorf("case %+v", c)
		}
	}
	// The queue is empty: nothing is delivered again.
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: q.QueueUrl, WaitTimeSeconds: 0, VisibilityTimeout: 0})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 0 {
		t.Fatalf("%d messages left in the queue", len(out.Messages))
	}
}

func TestSQSPollerNamesMissingDependencies(t *testing.T) {
	_, err := intake.NewSQSPoller(intake.SQSConfig{})
	for _, want := range []string{"QueueURL", "Client", "Intake"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v does not name %s", err, want)
		}
	}
}
