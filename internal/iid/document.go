// Package iid verifies EC2 instance identity documents: the JSON document an
// instance reads from its metadata service and AWS's signature over it, in
// the three variants IMDS serves (rsa2048 and pkcs7, PKCS#7 signed data that
// carries the document; signature, a bare RSA signature beside it). The
// PKCS#7 code reads the BER AWS produces with encoding/asn1 only.
package iid

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"
)

// Document is an instance identity document, as IMDS serves it at
// /latest/dynamic/instance-identity/document.
type Document struct {
	AccountID        string    `json:"accountId"`
	Architecture     string    `json:"architecture,omitempty"`
	AvailabilityZone string    `json:"availabilityZone"`
	ImageID          string    `json:"imageId,omitempty"`
	InstanceID       string    `json:"instanceId"`
	InstanceType     string    `json:"instanceType,omitempty"`
	PendingTime      time.Time `json:"pendingTime"`
	PrivateIP        string    `json:"privateIp,omitempty"`
	Region           string    `json:"region"`
	Version          string    `json:"version,omitempty"`
}

// maxDocumentBytes bounds a document; AWS's are under 1 KiB.
const maxDocumentBytes = 16 << 10

var (
	accountRE    = regexp.MustCompile(`^[0-9]{12}$`)
	instanceIDRE = regexp.MustCompile(`^i-[0-9a-f]{8,17}$`)
	regionRE     = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
	azRE         = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}[a-z]$`)
)

// ParseDocument decodes and validates a document. It refuses unknown JSON
// shapes, a missing or malformed account, instance id, region or zone, a
// zone outside the region and a missing pending time, so that nothing
// malformed reaches labels or the store.
func ParseDocument(b []byte) (*Document, error) {
	if len(b) > maxDocumentBytes {
		return nil, fmt.Errorf("the document is %d bytes; the limit is %d", len(b), maxDocumentBytes)
	}
	var d Document
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("the document is not valid JSON: %w", err)
	}
	if dec.More() {
		return nil, errors.New("the document has data after its JSON object")
	}
	switch {
	case !accountRE.MatchString(d.AccountID):
		return nil, fmt.Errorf("the document's accountId %q is not a 12-digit account id", d.AccountID)
	case !instanceIDRE.MatchString(d.InstanceID):
		return nil, fmt.Errorf("the document's instanceId %q is not an instance id", d.InstanceID)
	case !regionRE.MatchString(d.Region):
		return nil, fmt.Errorf("the document's region %q is not a region name", d.Region)
	case !azRE.MatchString(d.AvailabilityZone) || d.AvailabilityZone[:len(d.AvailabilityZone)-1] != d.Region:
		return nil, fmt.Errorf("the document's availabilityZone %q is not a zone of %s", d.AvailabilityZone, d.Region)
	case d.PendingTime.IsZero():
		return nil, errors.New("the document has no pendingTime")
	}
	return &d, nil
}
