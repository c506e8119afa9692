package trailscope

import (
	"bytes"
	"compress/gzip"
	"testing"
)

// FuzzParseLogFile feeds arbitrary bytes, gzipped or not, to the log file
// parser and everything downstream of it: no input may panic, and a file
// it accepts yields records with the fields every event has.
func FuzzParseLogFile(f *testing.F) {
	var evs []string
	for _, e := range attack() {
		evs = append(evs, e.json())
	}
	plain := []byte(`{"Records":[` + evs[0] + `,` + evs[3] + `,` + evs[10] + `]}`)
	f.Add(plain)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	w.Write(plain)
	w.Close()
	f.Add(gz.Bytes())
	f.Add([]byte(`{"Records":[]}`))
	f.Add([]byte(`{"Records":[{"eventTime":"x"}]}`))
	f.Add([]byte{0x1f, 0x8b, 0x08})
	f.Add([]byte(`{"Records":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, err := ParseLogFile(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, r := range recs {
			if r.EventTime.IsZero() || r.EventName == "" || r.EventSource == "" || r.EventID == "" || len(r.Raw) == 0 {
				t.Fatalf("accepted a record without its required fields: %+v", r)
			}
		}
		s := Build(exampleKey, recs, &Classifier{OrgAccounts: map[string]bool{exampleAccount: true}})
		if len(s.Chain.Credentials) == 0 || s.Chain.Credentials[0].AccessKeyID != exampleKey {
			t.Fatal("the chain lost its seed")
		}
	})
}

// FuzzParseRecord checks a single record's parser and classifier.
func FuzzParseRecord(f *testing.F) {
	for _, e := range attack() {
		f.Add([]byte(e.json()))
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"eventTime":"2024-05-01T10:00:00Z","eventSource":"ec2.amazonaws.com","eventName":"AuthorizeSecurityGroupIngress","eventID":"x","requestParameters":{"groupId":"sg-1","ipPermissions":{"items":[{"ipRanges":{"items":[1,{"cidrIp":5}]}}]}}}`))
	f.Add([]byte(`{"eventTime":"2024-05-01T10:00:00Z","eventSource":"iam.amazonaws.com","eventName":"CreateRole","eventID":"x","requestParameters":{"roleName":"r","assumeRolePolicyDocument":"{\"Statement\":{\"Effect\":\"Allow\",\"Principal\":{\"AWS\":[1,\"*\"]}}}"}}`))
	c := &Classifier{OrgAccounts: map[string]bool{exampleAccount: true}}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err != nil {
			return
		}
		got := c.Classify(r)
		if got.Class == "" {
			t.Fatal("a record was left without a class")
		}
		for _, a := range got.Artifacts {
			if a.Kind == "" || a.ID == "" {
				t.Fatalf("an artifact without kind or id: %+v", a)
			}
		}
	})
}
