package awsemu

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/firebreak-ir/firebreak/internal/iid"
)

// identityAuthority is the emulator's stand-in for AWS's regional
// identity-document signing key, made on first use: RSA key generation
// takes a while and most emulators never sign a document.
type identityAuthority struct {
	once sync.Once
	auth *iid.Authority
	err  error
}

func (e *Emulator) identityAuthority() (*iid.Authority, error) {
	e.iid.once.Do(func() {
		e.iid.auth, e.iid.err = iid.NewAuthority("Firebreak AWS emulator instance identity", e.now())
	})
	return e.iid.auth, e.iid.err
}

// IdentityCertificatePEM returns the certificate the emulator signs
// instance identity documents with, for the controller's --iid-cert-file.
func (e *Emulator) IdentityCertificatePEM() ([]byte, error) {
	a, err := e.identityAuthority()
	if err != nil {
		return nil, err
	}
	return a.CertificatePEM(), nil
}

// ErrNoInstance means an identity document was asked for an instance the
// account does not have.
var ErrNoInstance = errors.New("awsemu: no such instance")

// IdentityDocument returns the signed identity document of one of an
// account's instances, as its IMDS serves it: pendingTime is the launch
// time, and the signatures are made with the emulator's own key.
func (e *Emulator) IdentityDocument(accountID, instanceID string) (*iid.Signed, error) {
	d, err := e.identityDocumentOf(accountID, instanceID)
	if err != nil {
		return nil, err
	}
	return e.SignIdentityDocument(d)
}

// SignIdentityDocument signs any document with the emulator's key, for
// tests that need a document the emulator's state would not give (an old
// pendingTime, an instance it does not hold).
func (e *Emulator) SignIdentityDocument(d *iid.Document) (*iid.Signed, error) {
	a, err := e.identityAuthority()
	if err != nil {
		return nil, err
	}
	return a.Sign(d, e.now())
}

func (e *Emulator) identityDocumentOf(accountID, instanceID string) (*iid.Document, error) {
	acct := e.account(accountID)
	if acct == nil {
		return nil, fmt.Errorf("%w: account %s is not in the emulator", ErrNoInstance, accountID)
	}
	acct.mu.Lock()
	defer acct.mu.Unlock()
	for _, r := range acct.regions {
		in := r.instances[instanceID]
		if in == nil {
			continue
		}
		return &iid.Document{AccountID: accountID, Architecture: in.architecture, AvailabilityZone: in.az, ImageID: in.imageID,
			InstanceID: in.id, InstanceType: in.instanceType, PendingTime: in.launchTime.UTC().Truncate(time.Second),
			PrivateIP: in.privateIP, Region: r.name, Version: "2017-09-30"}, nil
	}
	return nil, fmt.Errorf("%w: %s in account %s", ErrNoInstance, instanceID, accountID)
}

// IMDS limits, as AWS's IMDSv2 sets them.
const (
	imdsMaxTokenTTL = 21600
	imdsTokenHeader = "X-Aws-Ec2-Metadata-Token" //nolint:gosec // G101: a header name, not a credential
	imdsTTLHeader   = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
)

// metadataService is one instance's metadata service.
type metadataService struct {
	e          *Emulator
	account    string
	instanceID string

	mu     sync.Mutex
	tokens map[string]time.Time
	// signedFor and signed are the last document signed and its
	// signatures: as AWS's, an instance's signatures do not change while
	// its document does not, and signing is an RSA operation per variant.
	signedFor iid.Document
	signed    *iid.Signed
}

// InstanceHeader names the instance a request to IMDSFleet is for.
const InstanceHeader = "X-Awsemu-Instance-Id"

// IMDSFleet serves the instance metadata of every instance of an account at
// one address, as IMDS(accountID, id) for the instance named by the
// InstanceHeader of each request: the stand-in for the link-local address
// each instance reaches its own IMDS at, for benchmarks that simulate many
// instances in one process. Each instance has its own session tokens; a
// request without the header, or naming an instance the account does not
// hold, is 404.
func (e *Emulator) IMDSFleet(accountID string) http.Handler {
	return &metadataFleet{e: e, account: accountID, services: map[string]*metadataService{}}
}

type metadataFleet struct {
	e       *Emulator
	account string

	mu       sync.Mutex
	services map[string]*metadataService
}

func (f *metadataFleet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := r.Header.Get(InstanceHeader)
	if id == "" {
		http.Error(w, "404 - Not Found (no "+InstanceHeader+")", http.StatusNotFound)
		return
	}
	if _, err := f.e.identityDocumentOf(f.account, id); err != nil {
		http.Error(w, "404 - Not Found", http.StatusNotFound)
		return
	}
	f.mu.Lock()
	m := f.services[id]
	if m == nil {
		m = &metadataService{e: f.e, account: f.account, instanceID: id, tokens: map[string]time.Time{}}
		f.services[id] = m
	}
	f.mu.Unlock()
	m.ServeHTTP(w, r)
}

// sign returns the signatures of doc, signing it again only when it
// changed since the last time.
func (m *metadataService) sign(doc *iid.Document) (*iid.Signed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.signed != nil && m.signedFor.PendingTime.Equal(doc.PendingTime) && sameBesidesTime(m.signedFor, *doc) {
		return m.signed, nil
	}
	signed, err := m.e.SignIdentityDocument(doc)
	if err != nil {
		return nil, err
	}
	m.signedFor, m.signed = *doc, signed
	return signed, nil
}

// sameBesidesTime compares two documents but for their pendingTime.
func sameBesidesTime(a, b iid.Document) bool {
	a.PendingTime, b.PendingTime = time.Time{}, time.Time{}
	return a == b
}

// IMDS returns the instance metadata service of one instance, IMDSv2 only:
// PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1 to
// 21600) returns a session token, which every GET must carry in
// X-aws-ec2-metadata-token. It serves the identity document and its
// signatures under /latest/dynamic/instance-identity/ (document, rsa2048,
// pkcs7, signature) and meta-data/instance-id, placement/region and
// placement/availability-zone. As AWS does, it refuses a token request that
// went through a proxy (X-Forwarded-For).
func (e *Emulator) IMDS(accountID, instanceID string) http.Handler {
	return &metadataService{e: e, account: accountID, instanceID: instanceID, tokens: map[string]time.Time{}}
}

// StartIMDS serves IMDS(accountID, instanceID) on addr (port 0 picks one)
// and returns its endpoint, for AWS_EC2_METADATA_SERVICE_ENDPOINT.
func (e *Emulator) StartIMDS(addr, accountID, instanceID string) (endpoint string, stop func(context.Context) error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("awsemu: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: e.IMDS(accountID, instanceID), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // Shutdown reports the end
	return "http://" + ln.Addr().String() + "/", srv.Shutdown, nil
}

func (m *metadataService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := m.e.now()
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut {
			http.Error(w, "405 - Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		if r.Header.Get("X-Forwarded-For") != "" {
			http.Error(w, "403 - Forbidden", http.StatusForbidden)
			return
		}
		ttl, err := strconv.Atoi(r.Header.Get(imdsTTLHeader))
		if err != nil || ttl < 1 || ttl > imdsMaxTokenTTL {
			http.Error(w, "400 - Bad Request", http.StatusBadRequest)
			return
		}
		b := make([]byte, 32)
		rand.Read(b)
		tok := hex.EncodeToString(b)
		m.mu.Lock()
		m.tokens[tok] = now.Add(time.Duration(ttl) * time.Second)
		m.mu.Unlock()
		w.Header().Set(imdsTTLHeader, strconv.Itoa(ttl))
		w.Write([]byte(tok))
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "405 - Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	m.mu.Lock()
	exp, ok := m.tokens[r.Header.Get(imdsTokenHeader)]
	m.mu.Unlock()
	if !ok || !now.Before(exp) {
		// IMDSv2 only: no token, or an expired one, is 401.
		http.Error(w, "401 - Unauthorized", http.StatusUnauthorized)
		return
	}
	doc, err := m.e.identityDocumentOf(m.account, m.instanceID)
	if err != nil {
		http.Error(w, "404 - Not Found", http.StatusNotFound)
		return
	}
	var body string
	switch r.URL.Path {
	case "/latest/meta-data/instance-id":
		body = doc.InstanceID
	case "/latest/meta-data/placement/region":
		body = doc.Region
	case "/latest/meta-data/placement/availability-zone":
		body = doc.AvailabilityZone
	case "/latest/dynamic/instance-identity/document", "/latest/dynamic/instance-identity/rsa2048",
		"/latest/dynamic/instance-identity/pkcs7", "/latest/dynamic/instance-identity/signature":
		signed, err := m.sign(doc)
		if err != nil {
			http.Error(w, "500 - Internal Server Error", http.StatusInternalServerError)
			return
		}
		switch r.URL.Path {
		case "/latest/dynamic/instance-identity/document":
			body = string(signed.Document)
		case "/latest/dynamic/instance-identity/rsa2048":
			body = signed.RSA2048
		case "/latest/dynamic/instance-identity/pkcs7":
			body = signed.PKCS7
		default:
			body = signed.Signature
		}
	default:
		http.Error(w, "404 - Not Found", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Write([]byte(body))
}
