package awsemu

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"

	"github.com/firebreak-ir/firebreak/internal/iid"
	"github.com/firebreak-ir/firebreak/internal/stsproof"
)

// firstInstance returns an account and one of its instances from the lab.
func firstInstance(t *testing.T, l *lab) (account, region string, in InstanceState) {
	t.Helper()
	for _, a := range l.emu.Dump().Accounts {
		for _, r := range a.Resources {
			if len(r.Instances) > 0 {
				return a.ID, r.Region, r.Instances[0]
			}
		}
	}
	t.Fatal("the lab has no instance")
	return
}

func TestIMDSServesSignedIdentityDocuments(t *testing.T) {
	l := newLab(t, 3)
	account, region, in := firstInstance(t, l)
	srv := httptest.NewServer(l.emu.IMDS(account, in.ID))
	t.Cleanup(srv.Close)

	client := imds.New(imds.Options{Endpoint: srv.URL, EnableFallback: aws.FalseTernary})
	get := func(path string) string {
		t.Helper()
		out, err := client.GetDynamicData(ctx(t), &imds.GetDynamicDataInput{Path: path})
		ok(t, err)
		b, err := io.ReadAll(out.Content)
		ok(t, err)
		return string(b)
	}
	doc := get("instance-identity/document")
	certPEM, err := l.emu.IdentityCertificatePEM()
	ok(t, err)
	cert, err := iid.ParseCertificatesPEM(certPEM)
	ok(t, err)
	certs, err := iid.AWSCertificates()
	ok(t, err)
	certs.Add(cert...)
	for _, variant := range []iid.Variant{iid.RSA2048, iid.PKCS7, iid.Signature} {
		t.Run(string(variant), func(t *testing.T) {
			sig := get("instance-identity/" + string(variant))
			var given []byte
			if variant == iid.Signature {
				given = []byte(doc)
			}
			d, err := iid.Verify(certs, variant, given, []byte(sig))
			ok(t, err)
			if d.AccountID != account || d.InstanceID != in.ID || d.Region != region || !strings.HasPrefix(d.AvailabilityZone, region) {
				t.Fatalf("document %+v, want account %s instance %s region %s", d, account, in.ID, region)
			}
		})
	}

	t.Run("IMDSv1 is refused", func(t *testing.T) {
		resp, err := http.Get(srv.URL + "/latest/dynamic/instance-identity/document")
		ok(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d without a token, want 401", resp.StatusCode)
		}
	})
	t.Run("an expired token is refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "1")
		resp, err := http.DefaultClient.Do(req)
		ok(t, err)
		tok, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		l.clock.Advance(2 * time.Second)
		req, _ = http.NewRequest(http.MethodGet, srv.URL+"/latest/meta-data/instance-id", nil)
		req.Header.Set("X-aws-ec2-metadata-token", string(tok))
		resp, err = http.DefaultClient.Do(req)
		ok(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d with an expired token, want 401", resp.StatusCode)
		}
	})
	t.Run("a proxied token request is refused", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		resp, err := http.DefaultClient.Do(req)
		ok(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
	})
	t.Run("unknown instance", func(t *testing.T) {
		if _, err := l.emu.IdentityDocument(account, "i-00000000000000000"); !errors.Is(err, ErrNoInstance) {
			t.Fatalf("err %v, want ErrNoInstance", err)
		}
	})
}

// TestGetCallerIdentityAsForwarded executes a GetCallerIdentity that a
// worker signed and someone else sends: the extra signed header is verified
// like any other, and a presigned one works too.
func TestGetCallerIdentityAsForwarded(t *testing.T) {
	l := newLab(t, 3)
	key := labKey("controller/" + LabAccountID(1))
	creds := credentials.NewStaticCredentialsProvider(key.ID, key.Secret, "")
	wantArn := "arn:aws:iam::" + LabAccountID(1) + ":user/" + LabControllerUser

	signed, err := stsproof.Sign(ctx(t), creds, l.srv.URL+"/", "us-east-1", "ctl-1", time.Now())
	ok(t, err)
	u, err := stsproof.Check(signed, stsproof.CheckConfig{ServerID: "ctl-1", Endpoint: l.srv.URL, Now: time.Now()})
	ok(t, err)
	id, err := stsproof.Execute(ctx(t), l.srv.Client(), u, signed)
	ok(t, err)
	if id.Arn != wantArn || id.Account != LabAccountID(1) {
		t.Fatalf("identity %+v, want %s", id, wantArn)
	}

	t.Run("a signed header changed after signing", func(t *testing.T) {
		forged := *signed
		forged.Headers = signed.Headers.Clone()
		forged.Headers.Set(stsproof.ServerIDHeader, "ctl-2")
		_, err := stsproof.Execute(ctx(t), l.srv.Client(), u, &forged)
		if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
			t.Fatalf("err %v, want SignatureDoesNotMatch", err)
		}
	})
	t.Run("presigned", func(t *testing.T) {
		c, err := creds.Retrieve(ctx(t))
		ok(t, err)
		req, _ := http.NewRequest(http.MethodGet, l.srv.URL+"/?Action=GetCallerIdentity&Version=2011-06-15", nil)
		req.Header.Set(stsproof.ServerIDHeader, "ctl-1")
		presigned, hdr, err := v4.NewSigner().PresignHTTP(ctx(t), c, req, emptySHA256, "sts", "us-east-1", time.Now())
		ok(t, err)
		get, _ := http.NewRequest(http.MethodGet, presigned, nil)
		for k, v := range hdr {
			if k != "Host" {
				get.Header[k] = v
			}
		}
		resp, err := l.srv.Client().Do(get)
		ok(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), wantArn) {
			t.Fatalf("status %d body %s", resp.StatusCode, body)
		}
	})
}

// headerClient adds the instance header to every request, as a simulated
// instance's IMDS client does against IMDSFleet.
type headerClient struct {
	id string
	c  *http.Client
}

func (h headerClient) Do(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if h.id != "" {
		r.Header.Set(InstanceHeader, h.id)
	}
	return h.c.Do(r) //nolint:gosec // G704: the test's own httptest server
}

// TestIMDSFleet serves the metadata of several instances at one address:
// each instance gets its own signed document and its own session tokens,
// an instance stays signed the same way while its document does not
// change, and a request naming no instance, or one the account lacks, is
// 404.
func TestIMDSFleet(t *testing.T) {
	l := newLab(t, 3)
	account := LabAccountID(2)
	var ids []string
	for _, a := range l.emu.Dump().Accounts {
		if a.ID != account {
			continue
		}
		for _, r := range a.Resources {
			for _, in := range r.Instances {
				ids = append(ids, in.ID)
			}
		}
	}
	if len(ids) < 2 {
		t.Fatalf("account %s has %d instances, want 2 or more", account, len(ids))
	}
	srv := httptest.NewServer(l.emu.IMDSFleet(account))
	t.Cleanup(srv.Close)
	client := func(id string) *imds.Client {
		return imds.New(imds.Options{Endpoint: srv.URL, EnableFallback: aws.FalseTernary, HTTPClient: headerClient{id: id, c: srv.Client()},
			Retryer: aws.NopRetryer{}})
	}
	get := func(c *imds.Client, path string) (string, error) {
		out, err := c.GetDynamicData(ctx(t), &imds.GetDynamicDataInput{Path: path})
		if err != nil {
			return "", err
		}
		defer out.Content.Close()
		b, err := io.ReadAll(out.Content)
		return string(b), err
	}
	certPEM, err := l.emu.IdentityCertificatePEM()
	ok(t, err)
	cert, err := iid.ParseCertificatesPEM(certPEM)
	ok(t, err)
	certs, err := iid.AWSCertificates()
	ok(t, err)
	certs.Add(cert...)

	tests := []struct {
		name    string
		id      string
		wantErr string
	}{
		{name: "first instance", id: ids[0]},
		{name: "second instance", id: ids[1]},
		{name: "no instance header", id: "", wantErr: "404"},
		{name: "an instance the account lacks", id: "i-00000000000000000", wantErr: "404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := client(tt.id)
			sig, err := get(c, "instance-identity/rsa2048")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want %s", err, tt.wantErr)
				}
				return
			}
			ok(t, err)
			d, err := iid.Verify(certs, iid.RSA2048, nil, []byte(sig))
			ok(t, err)
			if d.InstanceID != tt.id || d.AccountID != account {
				t.Fatalf("document of %s in %s, want %s in %s", d.InstanceID, d.AccountID, tt.id, account)
			}
			again, err := get(c, "instance-identity/rsa2048")
			ok(t, err)
			if again != sig {
				t.Fatal("the unchanged document was signed anew")
			}
		})
	}

	t.Run("a token of one instance is refused for another", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPut, srv.URL+"/latest/api/token", nil)
		req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
		req.Header.Set(InstanceHeader, ids[0])
		resp, err := http.DefaultClient.Do(req)
		ok(t, err)
		tok, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, tc := range []struct {
			id   string
			want int
		}{{ids[0], http.StatusOK}, {ids[1], http.StatusUnauthorized}} {
			req, _ = http.NewRequest(http.MethodGet, srv.URL+"/latest/meta-data/instance-id", nil)
			req.Header.Set("X-aws-ec2-metadata-token", string(tok))
			req.Header.Set(InstanceHeader, tc.id)
			resp, err = http.DefaultClient.Do(req)
			ok(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || (tc.want == http.StatusOK && string(body) != ids[0]) {
				t.Fatalf("instance %s with the token of %s: status %d body %q, want %d", tc.id, ids[0], resp.StatusCode, body, tc.want)
			}
		}
	})
}
