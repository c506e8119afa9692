package awsemu

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"maps"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
)

const s3Namespace = "http://s3.amazonaws.com/doc/2006-03-01/"

func (e *Emulator) s3Service() *service {
	s := &service{
		name:        "s3",
		eventSource: "s3.amazonaws.com",
		protocol:    protoRestXML,
		errs:        s3Errors(),
	}
	s.router = e.s3Route
	bucketARN := func(e *Emulator, c *call) []string {
		return []string{"arn:aws:s3:::" + c.path["Bucket"]}
	}
	ops := []*operation{
		{name: "ListBuckets", action: "s3:ListAllMyBuckets", readOnly: true, handle: (*Emulator).s3ListBuckets},
		{name: "GetBucketLocation", action: "s3:GetBucketLocation", readOnly: true, handle: (*Emulator).s3GetBucketLocation},
		{name: "HeadBucket", action: "s3:ListBucket", readOnly: true, handle: (*Emulator).s3HeadBucket},
		{name: "GetBucketPolicy", action: "s3:GetBucketPolicy", readOnly: true, handle: (*Emulator).s3GetBucketPolicy},
		{name: "PutBucketPolicy", action: "s3:PutBucketPolicy", handle: (*Emulator).s3PutBucketPolicy},
		{name: "DeleteBucketPolicy", action: "s3:DeleteBucketPolicy", handle: (*Emulator).s3DeleteBucketPolicy},
		{name: "GetBucketAcl", action: "s3:GetBucketAcl", readOnly: true, handle: (*Emulator).s3GetBucketACL},
		{name: "PutBucketAcl", action: "s3:PutBucketAcl", handle: (*Emulator).s3PutBucketACL},
		{name: "GetPublicAccessBlock", action: "s3:GetBucketPublicAccessBlock", readOnly: true, handle: (*Emulator).s3GetPublicAccessBlock},
		{name: "PutPublicAccessBlock", action: "s3:PutBucketPublicAccessBlock", handle: (*Emulator).s3PutPublicAccessBlock},
		{name: "DeletePublicAccessBlock", action: "s3:PutBucketPublicAccessBlock", handle: (*Emulator).s3DeletePublicAccessBlock},
		{name: "GetBucketPolicyStatus", action: "s3:GetBucketPolicyStatus", readOnly: true, handle: (*Emulator).s3GetBucketPolicyStatus},
		{name: "ListObjectsV2", action: "s3:ListBucket", readOnly: true, dataEvent: true, handle: (*Emulator).s3ListObjectsV2},
		{name: "GetObject", action: "s3:GetObject", readOnly: true, dataEvent: true, handle: (*Emulator).s3GetObject, resources: objectARN},
		{name: "HeadObject", action: "s3:GetObject", readOnly: true, dataEvent: true, handle: (*Emulator).s3GetObject, resources: objectARN},
		{name: "GetObjectLockConfiguration", action: "s3:GetBucketObjectLockConfiguration", readOnly: true, handle: (*Emulator).s3GetObjectLockConfiguration},
		{name: "GetBucketVersioning", action: "s3:GetBucketVersioning", readOnly: true, handle: (*Emulator).s3GetBucketVersioning},
		{name: "GetBucketEncryption", action: "s3:GetEncryptionConfiguration", readOnly: true, handle: (*Emulator).s3GetBucketEncryption},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		if op.name != "ListBuckets" && op.resources == nil {
			op.resources = bucketARN
		}
		s.ops[op.name] = op
	}
	return s
}

// s3Subresources maps a bucket subresource and method to an operation.
var s3Subresources = map[string]map[string]string{
	"location":          {http.MethodGet: "GetBucketLocation"},
	"policy":            {http.MethodGet: "GetBucketPolicy", http.MethodPut: "PutBucketPolicy", http.MethodDelete: "DeleteBucketPolicy"},
	"acl":               {http.MethodGet: "GetBucketAcl", http.MethodPut: "PutBucketAcl"},
	"publicAccessBlock": {http.MethodGet: "GetPublicAccessBlock", http.MethodPut: "PutPublicAccessBlock", http.MethodDelete: "DeletePublicAccessBlock"},
	"policyStatus":      {http.MethodGet: "GetBucketPolicyStatus"},
	"object-lock":       {http.MethodGet: "GetObjectLockConfiguration"},
	"versioning":        {http.MethodGet: "GetBucketVersioning"},
	"encryption":        {http.MethodGet: "GetBucketEncryption"},
}

// s3Route reads the bucket from the path (path style) or from the Host
// header (virtual-hosted style), and the operation from the method and the
// subresource in the query.
func (e *Emulator) s3Route(r *http.Request) (string, map[string]string, *apiError) {
	bucketName, key := "", ""
	if b := e.virtualHostBucket(r.Host); b != "" {
		bucketName, key = b, strings.TrimPrefix(r.URL.Path, "/")
	} else {
		path := strings.TrimPrefix(r.URL.Path, "/")
		bucketName, key, _ = strings.Cut(path, "/")
	}
	notImplemented := errorf(http.StatusNotImplemented, "NotImplemented", "A header you provided implies functionality that is not implemented.")
	if bucketName == "" {
		if r.Method == http.MethodGet {
			return "ListBuckets", nil, nil
		}
		return "", nil, errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
	}
	q := r.URL.Query()
	if key != "" {
		// The SDK names the operation in x-id; presigned requests carry
		// their signature in X-Amz-*. Any other query is a subresource
		// the emulator does not serve.
		for k := range q {
			if k != "x-id" && !strings.HasPrefix(k, "X-Amz-") {
				return "", nil, notImplemented
			}
		}
		switch r.Method {
		case http.MethodGet:
			return "GetObject", map[string]string{"Bucket": bucketName, "Key": key}, nil
		case http.MethodHead:
			return "HeadObject", map[string]string{"Bucket": bucketName, "Key": key}, nil
		}
		return "", nil, notImplemented
	}
	for sub, byMethod := range s3Subresources {
		if _, ok := q[sub]; ok {
			if op, ok := byMethod[r.Method]; ok {
				return op, map[string]string{"Bucket": bucketName}, nil
			}
			return "", nil, errorf(http.StatusMethodNotAllowed, "MethodNotAllowed", "The specified method is not allowed against this resource.")
		}
	}
	if q.Get("list-type") == "2" && r.Method == http.MethodGet {
		return "ListObjectsV2", map[string]string{"Bucket": bucketName}, nil
	}
	if r.Method == http.MethodHead && !slices.ContainsFunc(slices.Collect(maps.Keys(q)), func(k string) bool { return k != "x-id" && !strings.HasPrefix(k, "X-Amz-") }) {
		return "HeadBucket", map[string]string{"Bucket": bucketName}, nil
	}
	return "", nil, notImplemented
}

// virtualHostBucket returns the bucket a virtual-hosted request names in
// its Host header: the longest existing bucket name followed by a dot.
func (e *Emulator) virtualHostBucket(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if net.ParseIP(host) != nil || !strings.Contains(host, ".") {
		return ""
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	best := ""
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			if _, ok := e.buckets[host[:i]]; ok && i > len(best) {
				best = host[:i]
			}
		}
	}
	return best
}

var bucketNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func validBucketName(name string) bool {
	return bucketNamePattern.MatchString(name) && !strings.Contains(name, "..") && net.ParseIP(name) == nil
}

// canonicalUserID is the account's S3 canonical user id.
func canonicalUserID(account string) string {
	d := sha256.Sum256([]byte("s3-canonical/" + account))
	return hex.EncodeToString(d[:])
}

const (
	groupAllUsers           = "http://acs.amazonaws.com/groups/global/AllUsers"
	groupAuthenticatedUsers = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
)

// cannedACL expands a canned ACL into grants.
func cannedACL(name, account string) ([]grant, error) {
	owner := grant{"CanonicalUser", canonicalUserID(account), "FULL_CONTROL"}
	switch name {
	case "private":
		return []grant{owner}, nil
	case "public-read":
		return []grant{owner, {"Group", groupAllUsers, "READ"}}, nil
	case "public-read-write":
		return []grant{owner, {"Group", groupAllUsers, "READ"}, {"Group", groupAllUsers, "WRITE"}}, nil
	case "authenticated-read":
		return []grant{owner, {"Group", groupAuthenticatedUsers, "READ"}}, nil
	}
	return nil, fmt.Errorf("canned ACL %q is not private, public-read, public-read-write or authenticated-read", name)
}

func aclIsPublic(acl []grant) bool {
	return slices.ContainsFunc(acl, func(g grant) bool {
		return g.granteeType == "Group" && (g.granteeID == groupAllUsers || g.granteeID == groupAuthenticatedUsers)
	})
}

// restrictingKeys are condition keys that pin a statement to known callers,
// so a statement with "*" as principal that tests them is not public.
var restrictingKeys = []string{"aws:sourceip", "aws:sourcevpc", "aws:sourcevpce", "aws:principalaccount", "aws:principalorgid",
	"aws:sourceaccount", "aws:sourcearn", "aws:sourceowner", "aws:principalarn", "aws:userid", "aws:principalorgpaths"}

// policyIsPublic applies S3's test: an Allow to everyone that no condition
// pins to fixed values.
func policyIsPublic(doc string) bool {
	p, err := parsePolicy(doc, resourcePolicy)
	if err != nil {
		return false
	}
	for _, st := range p.Statements {
		if st.Deny || st.Principal == nil || st.NotPrincipal || !st.Principal.Any {
			continue
		}
		pinned := slices.ContainsFunc(st.Conditions, func(c condition) bool {
			return slices.Contains(restrictingKeys, c.Key) && !slices.ContainsFunc(c.Values, func(v string) bool { return strings.ContainsAny(v, "*?") })
		})
		if !pinned {
			return true
		}
	}
	return false
}

// bucketFor finds the call's bucket and locks its owner's account, which is
// the caller's. A bucket of another account is refused, and a request
// signed for the wrong region is told the right one.
func (e *Emulator) bucketFor(c *call, anyRegion bool) (*bucket, *apiError) {
	name := c.path["Bucket"]
	e.mu.RLock()
	b := e.buckets[name]
	e.mu.RUnlock()
	if b == nil {
		return nil, &apiError{Code: "NoSuchBucket", Status: http.StatusNotFound, Message: "The specified bucket does not exist", Fields: map[string]string{"BucketName": name}}
	}
	if b.owner != c.who.account {
		return nil, &apiError{Code: "AccessDenied", Status: http.StatusForbidden, Message: "Access Denied"}
	}
	c.acct.mu.Lock()
	if !anyRegion && b.region != c.region {
		region := b.region
		c.acct.mu.Unlock()
		return nil, &apiError{Code: "AuthorizationHeaderMalformed", Status: http.StatusBadRequest,
			Message: fmt.Sprintf("The authorization header is malformed; the region '%s' is wrong; expecting '%s'", c.region, region),
			Fields:  map[string]string{"Region": region}}
	}
	return b, nil
}

type s3Owner struct {
	ID          string `xml:"ID"`
	DisplayName string `xml:"DisplayName,omitempty"`
}

func (e *Emulator) s3ListBuckets(c *call) (any, error) {
	q := c.r.URL.Query()
	limit := 10000
	if v := q.Get("max-buckets"); v != "" {
		var n int
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1 || n > 10000 {
			return nil, errorf(http.StatusBadRequest, "InvalidArgument", "max-buckets must be between 1 and 10000")
		}
		limit = n
	}
	e.mu.RLock()
	var names []string
	for n, b := range e.buckets {
		if b.owner == c.who.account {
			names = append(names, n)
		}
	}
	e.mu.RUnlock()
	slices.Sort(names)
	page, next, ae := jsonPage(names, q.Get("continuation-token"), limit, 10000, func(string) *apiError {
		return errorf(http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect")
	})
	if ae != nil {
		return nil, ae
	}
	type bucketOut struct {
		Name         string `xml:"Name"`
		CreationDate string `xml:"CreationDate"`
		BucketRegion string `xml:"BucketRegion"`
	}
	out := &struct {
		XMLName           xml.Name    `xml:"ListAllMyBucketsResult"`
		Xmlns             string      `xml:"xmlns,attr"`
		Owner             s3Owner     `xml:"Owner"`
		Buckets           []bucketOut `xml:"Buckets>Bucket"`
		ContinuationToken string      `xml:"ContinuationToken,omitempty"`
	}{Xmlns: s3Namespace, Owner: s3Owner{ID: canonicalUserID(c.who.account)}, ContinuationToken: next}
	// Bucket names, regions and creation times never change.
	e.mu.RLock()
	defer e.mu.RUnlock()
	for _, n := range page {
		b := e.buckets[n]
		out.Buckets = append(out.Buckets, bucketOut{b.name, xmlTime(b.created), b.region})
	}
	return out, nil
}

func (e *Emulator) s3GetBucketLocation(c *call) (any, error) {
	b, ae := e.bucketFor(c, true)
	if ae != nil {
		return nil, ae
	}
	region := b.region
	c.acct.mu.Unlock()
	if region == "us-east-1" {
		// S3 reports the original region as an empty constraint.
		region = ""
	}
	return &struct {
		XMLName xml.Name `xml:"LocationConstraint"`
		Xmlns   string   `xml:"xmlns,attr"`
		Value   string   `xml:",chardata"`
	}{Xmlns: s3Namespace, Value: region}, nil
}

// s3HeadBucket answers whether the bucket exists and may be listed, with
// its region, as S3 does for HeadBucket.
func (e *Emulator) s3HeadBucket(c *call) (any, error) {
	b, ae := e.bucketFor(c, true)
	if ae != nil {
		return nil, ae
	}
	region := b.region
	c.acct.mu.Unlock()
	return &rawResponse{status: http.StatusOK, header: http.Header{"X-Amz-Bucket-Region": []string{region}}}, nil
}

func noSuchBucketPolicy(name string) *apiError {
	return &apiError{Code: "NoSuchBucketPolicy", Status: http.StatusNotFound, Message: "The bucket policy does not exist", Fields: map[string]string{"BucketName": name}}
}

func (e *Emulator) s3GetBucketPolicy(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	policy, name := b.policy, b.name
	c.acct.mu.Unlock()
	if policy == "" {
		return nil, noSuchBucketPolicy(name)
	}
	return &rawResponse{contentType: "application/json", body: []byte(policy)}, nil
}

// verifyChecksums checks the body against every checksum the request
// carries in its headers or trailers.
func verifyChecksums(c *call) *apiError {
	body := c.body
	header := func(name string) string {
		if v := c.r.Header.Get(name); v != "" {
			return v
		}
		return c.trailers.Get(name)
	}
	if v := c.r.Header.Get("Content-MD5"); v != "" {
		sum := md5.Sum(body)
		if base64.StdEncoding.EncodeToString(sum[:]) != v {
			return errorf(http.StatusBadRequest, "BadDigest", "The Content-MD5 you specified did not match what we received.")
		}
	}
	crc64nvme := crc64.MakeTable(0x9a6c9329ac4bc9b5)
	checks := []struct {
		header, name string
		hash         func() hash.Hash
	}{
		{"X-Amz-Checksum-Crc32", "CRC32", func() hash.Hash { return crc32.NewIEEE() }},
		{"X-Amz-Checksum-Crc32c", "CRC32C", func() hash.Hash { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }},
		{"X-Amz-Checksum-Crc64nvme", "CRC64NVME", func() hash.Hash { return crc64.New(crc64nvme) }},
		{"X-Amz-Checksum-Sha1", "SHA1", sha1.New},
		{"X-Amz-Checksum-Sha256", "SHA256", sha256.New},
	}
	for _, ck := range checks {
		v := header(ck.header)
		if v == "" {
			continue
		}
		h := ck.hash()
		h.Write(body)
		if base64.StdEncoding.EncodeToString(h.Sum(nil)) != v {
			return errorf(http.StatusBadRequest, "BadDigest", "The %s you specified did not match the calculated checksum.", ck.name)
		}
	}
	return nil
}

func (e *Emulator) s3PutBucketPolicy(c *call) (any, error) {
	if ae := verifyChecksums(c); ae != nil {
		return nil, ae
	}
	doc := string(c.body)
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	defer c.acct.mu.Unlock()
	p, err := parsePolicy(doc, resourcePolicy)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "MalformedPolicy", "%s", err.Error())
	}
	for _, st := range p.Statements {
		for _, r := range st.Resources {
			if r != "arn:aws:s3:::"+b.name && !strings.HasPrefix(r, "arn:aws:s3:::"+b.name+"/") {
				return nil, errorf(http.StatusBadRequest, "MalformedPolicy", "Policy has invalid resource")
			}
		}
	}
	if b.pab != nil && b.pab.BlockPublicPolicy && policyIsPublic(doc) {
		return nil, errorf(http.StatusForbidden, "AccessDenied", "User: %s is not authorized to perform: s3:PutBucketPolicy on resource: \"arn:aws:s3:::%s\" because public policies are blocked by the BlockPublicPolicy block public access setting.", c.who.arn, b.name)
	}
	b.policy = doc
	return &rawResponse{status: http.StatusNoContent}, nil
}

func (e *Emulator) s3DeleteBucketPolicy(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	b.policy = ""
	c.acct.mu.Unlock()
	return &rawResponse{status: http.StatusNoContent}, nil
}

type s3Grantee struct {
	XSI         string `xml:"xmlns:xsi,attr"`
	Type        string `xml:"xsi:type,attr"`
	ID          string `xml:"ID,omitempty"`
	URI         string `xml:"URI,omitempty"`
	DisplayName string `xml:"DisplayName,omitempty"`
}

type s3Grant struct {
	Grantee    s3Grantee `xml:"Grantee"`
	Permission string    `xml:"Permission"`
}

type s3AccessControlPolicy struct {
	XMLName xml.Name  `xml:"AccessControlPolicy"`
	Xmlns   string    `xml:"xmlns,attr,omitempty"`
	Owner   s3Owner   `xml:"Owner"`
	Grants  []s3Grant `xml:"AccessControlList>Grant"`
}

func (e *Emulator) s3GetBucketACL(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	defer c.acct.mu.Unlock()
	out := &s3AccessControlPolicy{Xmlns: s3Namespace, Owner: s3Owner{ID: canonicalUserID(b.owner)}}
	for _, g := range b.acl {
		gr := s3Grantee{XSI: "http://www.w3.org/2001/XMLSchema-instance", Type: g.granteeType}
		if g.granteeType == "Group" {
			gr.URI = g.granteeID
		} else {
			gr.ID = g.granteeID
		}
		out.Grants = append(out.Grants, s3Grant{gr, g.permission})
	}
	return out, nil
}

func (e *Emulator) s3PutBucketACL(c *call) (any, error) {
	if ae := verifyChecksums(c); ae != nil {
		return nil, ae
	}
	var acl []grant
	if canned := c.r.Header.Get("X-Amz-Acl"); canned != "" {
		var err error
		if acl, err = cannedACL(canned, c.who.account); err != nil {
			return nil, errorf(http.StatusBadRequest, "InvalidArgument", "%v", err)
		}
	} else if len(c.body) > 0 {
		var in struct {
			Grants []struct {
				Grantee struct {
					Type string `xml:"type,attr"`
					ID   string `xml:"ID"`
					URI  string `xml:"URI"`
				} `xml:"Grantee"`
				Permission string `xml:"Permission"`
			} `xml:"AccessControlList>Grant"`
		}
		if err := xml.Unmarshal(c.body, &in); err != nil {
			return nil, errorf(http.StatusBadRequest, "MalformedACLError", "The XML you provided was not well-formed or did not validate against our published schema")
		}
		for _, g := range in.Grants {
			id := g.Grantee.ID
			if g.Grantee.Type == "Group" {
				id = g.Grantee.URI
			}
			acl = append(acl, grant{g.Grantee.Type, id, g.Permission})
		}
	} else {
		return nil, errorf(http.StatusBadRequest, "MissingSecurityHeader", "Your request was missing a required header")
	}
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	defer c.acct.mu.Unlock()
	if b.pab != nil && b.pab.BlockPublicAcls && aclIsPublic(acl) {
		return nil, errorf(http.StatusForbidden, "AccessDenied", "Access Denied")
	}
	b.acl = acl
	return &rawResponse{status: http.StatusOK}, nil
}

type s3PublicAccessBlock struct {
	XMLName               xml.Name `xml:"PublicAccessBlockConfiguration"`
	Xmlns                 string   `xml:"xmlns,attr,omitempty"`
	BlockPublicAcls       bool     `xml:"BlockPublicAcls"`
	IgnorePublicAcls      bool     `xml:"IgnorePublicAcls"`
	BlockPublicPolicy     bool     `xml:"BlockPublicPolicy"`
	RestrictPublicBuckets bool     `xml:"RestrictPublicBuckets"`
}

func noSuchPAB(name string) *apiError {
	return &apiError{Code: "NoSuchPublicAccessBlockConfiguration", Status: http.StatusNotFound, Message: "The public access block configuration was not found", Fields: map[string]string{"BucketName": name}}
}

func (e *Emulator) s3GetPublicAccessBlock(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	defer c.acct.mu.Unlock()
	if b.pab == nil {
		return nil, noSuchPAB(b.name)
	}
	p := b.pab
	return &s3PublicAccessBlock{Xmlns: s3Namespace, BlockPublicAcls: p.BlockPublicAcls, IgnorePublicAcls: p.IgnorePublicAcls,
		BlockPublicPolicy: p.BlockPublicPolicy, RestrictPublicBuckets: p.RestrictPublicBuckets}, nil
}

func (e *Emulator) s3PutPublicAccessBlock(c *call) (any, error) {
	if ae := verifyChecksums(c); ae != nil {
		return nil, ae
	}
	var in s3PublicAccessBlock
	if err := xml.Unmarshal(c.body, &in); err != nil {
		return nil, errorf(http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema")
	}
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	b.pab = &publicAccessBlock{in.BlockPublicAcls, in.IgnorePublicAcls, in.BlockPublicPolicy, in.RestrictPublicBuckets}
	c.acct.mu.Unlock()
	return &rawResponse{status: http.StatusOK}, nil
}

func (e *Emulator) s3DeletePublicAccessBlock(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	b.pab = nil
	c.acct.mu.Unlock()
	return &rawResponse{status: http.StatusNoContent}, nil
}

func (e *Emulator) s3GetBucketPolicyStatus(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	policy, name := b.policy, b.name
	c.acct.mu.Unlock()
	if policy == "" {
		return nil, noSuchBucketPolicy(name)
	}
	return &struct {
		XMLName  xml.Name `xml:"PolicyStatus"`
		Xmlns    string   `xml:"xmlns,attr"`
		IsPublic bool     `xml:"IsPublic"`
	}{Xmlns: s3Namespace, IsPublic: policyIsPublic(policy)}, nil
}
