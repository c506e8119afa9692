package hostcollect

import (
	"bytes"
	"io"
	"maps"
	"strings"
	"testing"
	"testing/iotest"
)

const (
	testToken      = "fbj_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"
	testSecretKey  = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	testSessionTok = "IQoJb3JpZ2luX2VjEOT//////////wEaCXVzLWVhc3QtMSJHMEUCIQD6Iv0ov2zuQ3gexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexampleexample+/=="
	testKeyBody    = "MHcCAQEEIBgCmN0AbcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMoAoGCCqGSM49\nAwEHoUQDQgAEexampleexampleexampleexampleexampleexampleexampleexample==\n"
	testPEM        = "-----BEGIN EC PRIVATE KEY-----\n" + testKeyBody + "-----END EC PRIVATE KEY-----\n"
)

func TestRedactText(t *testing.T) {
	jsonPEM := strings.ReplaceAll(testPEM, "\n", `\n`)
	tests := []struct {
		name   string
		in     string
		gone   []string // must not be in the output
		kept   []string // must be in the output unchanged
		counts map[string]int64
	}{
		{"join token in an env entry", "FIREBREAK_JOIN_TOKEN=" + testToken, []string{testToken}, []string{"FIREBREAK_JOIN_TOKEN=[REDACTED:firebreak-join-token]"},
			map[string]int64{RedactJoinToken: 1}},
		{"join token on a command line", "firebreak-agent --join-token " + testToken + " --role host", []string{testToken}, []string{"--join-token ", " --role host"},
			map[string]int64{RedactJoinToken: 1}},
		{"two join tokens", testToken + "\n" + testToken + "!x", []string{testToken}, []string{"\n", "*!x"}, map[string]int64{RedactJoinToken: 2}},
		{"env secret key", "AWS_SECRET_ACCESS_KEY=" + testSecretKey + "\n", []string{testSecretKey}, []string{"AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-access-key]********\n"},
			map[string]int64{RedactAWSSecretKey: 1}},
		{"credentials file", "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\naws_secret_access_key = " + testSecretKey + "\naws_session_token = " + testSessionTok + "\n",
			[]string{testSecretKey, testSessionTok[:40], testSessionTok[len(testSessionTok)-40:]}, []string{"aws_access_key_id = AKIAIOSFODNN7EXAMPLE\n", "aws_secret_access_key = [REDACTED"},
			map[string]int64{RedactAWSSecretKey: 1, RedactAWSSessionToken: 1}},
		{"sts JSON", `{"Credentials": {"AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "` + testSecretKey + `", "SessionToken": "` + testSessionTok + `"}}`,
			[]string{testSecretKey, testSessionTok[:40]}, []string{`"AccessKeyId": "ASIAEXAMPLE"`, `"}}`}, map[string]int64{RedactAWSSecretKey: 1, RedactAWSSessionToken: 1}},
		{"aws configure set", "aws configure set aws_secret_access_key " + testSecretKey, []string{testSecretKey}, []string{"aws configure set aws_secret_access_key "},
			map[string]int64{RedactAWSSecretKey: 1}},
		{"session token by shape", "export X=" + testSessionTok, []string{testSessionTok[:40]}, []string{"export X="}, map[string]int64{RedactAWSSessionToken: 1}},
		{"PEM private key", "before\n" + testPEM + "after\n", []string{"MHcCAQEE", "AwEHoUQD"}, []string{"before\n-----BEGIN EC PRIVATE KEY-----\n", "-----END EC PRIVATE KEY-----\nafter\n"},
			map[string]int64{RedactPrivateKey: 1}},
		{"PEM private key in a JSON credential", `{"name": "admin", "key_pem": "` + jsonPEM + `", "cert_pem": "x"}`, []string{"MHcCAQEE", "AwEHoUQD"},
			[]string{`{"name": "admin", "key_pem": "-----BEGIN EC PRIVATE KEY-----`, `-----END EC PRIVATE KEY-----\n", "cert_pem": "x"}`}, map[string]int64{RedactPrivateKey: 1}},
		{"PEM key cut short stops at a quote", `"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkq", "next": "kept"`, []string{"MIIEvQ"}, []string{`", "next": "kept"`},
			map[string]int64{RedactPrivateKey: 1}},
		{"certificate and public key untouched", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN PUBLIC KEY-----\nMFkw\n-----END PUBLIC KEY-----\n",
			nil, []string{"MIIB", "MFkw"}, nil},
		{"lookalikes untouched", "fbj_short AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE aws_secret_access_key_file=/etc/aws/key AWS_SESSION_TOKEN=$TOKEN session_token=short " +
			"git 3f786850e387550fdab836ed7e6dc881de23001b", nil,
			[]string{"fbj_short", "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key_file=/etc/aws/key", "AWS_SESSION_TOKEN=$TOKEN", "session_token=short", "3f786850e387550fdab836ed7e6dc881de23001b"}, nil},
		{"empty", "", nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.in)
			counts := RedactText(b)
			out := string(b)
			if len(out) != len(tt.in) {
				t.Fatalf("length %d, want %d", len(out), len(tt.in))
			}
			for _, s := range tt.gone {
				if strings.Contains(out, s) {
					t.Errorf("output still holds %q:\n%s", s, out)
				}
			}
			for _, s := range tt.kept {
				if !strings.Contains(out, s) {
					t.Errorf("output lost %q:\n%s", s, out)
				}
			}
			if !maps.Equal(counts, tt.counts) && !(len(counts) == 0 && len(tt.counts) == 0) {
				t.Errorf("counts %v, want %v", counts, tt.counts)
			}
			if len(tt.counts) == 0 && out != tt.in {
				t.Errorf("nothing counted but the text changed:\n%s", out)
			}
			checkRedacted(t, tt.in, b, counts)
		})
	}
}

func TestRedactEnvVariable(t *testing.T) {
	tests := []struct{ in, want, name string }{
		{"FIREBREAK_JOIN_TOKEN=anything", "FIREBREAK_JOIN_TOKEN=********", "FIREBREAK_JOIN_TOKEN"},
		{"FIREBREAK_JOIN_TOKEN=" + testToken, "FIREBREAK_JOIN_TOKEN=[REDACTED:firebreak-join-token]****************", "FIREBREAK_JOIN_TOKEN"},
		{"AWS_SECRET_ACCESS_KEY=" + testSecretKey, "AWS_SECRET_ACCESS_KEY=[REDACTED:aws-secret-access-key]********", "AWS_SECRET_ACCESS_KEY"},
		{"AWS_SESSION_TOKEN=abc", "AWS_SESSION_TOKEN=***", "AWS_SESSION_TOKEN"},
		{"AWS_SECURITY_TOKEN=abc", "AWS_SECURITY_TOKEN=***", "AWS_SECURITY_TOKEN"},
		{"FIREBREAK_JOIN_TOKEN=****", "FIREBREAK_JOIN_TOKEN=****", ""},
		{"FIREBREAK_JOIN_TOKEN=", "FIREBREAK_JOIN_TOKEN=", ""},
		{"FIREBREAK_JOIN_TOKEN_FILE=/etc/firebreak/join-token", "FIREBREAK_JOIN_TOKEN_FILE=/etc/firebreak/join-token", ""},
		{"AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", ""},
		{"PATH=/usr/bin", "PATH=/usr/bin", ""},
		{"no equals sign", "no equals sign", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, name := redactEnvVariable(tt.in)
			if got != tt.want || name != tt.name {
				t.Fatalf("got %q, %q; want %q, %q", got, name, tt.want, tt.name)
			}
		})
	}
}

// TestRedactingReaderAcrossChunks puts secrets across every chunk boundary
// the streaming reader meets and checks it redacts exactly as the
// whole-buffer redactor does, whatever sizes its source returns.
func TestRedactingReaderAcrossChunks(t *testing.T) {
	secrets := []string{testToken, "aws_secret_access_key = " + testSecretKey, testPEM, "AWS_SESSION_TOKEN=" + testSessionTok}
	for _, s := range secrets {
		for _, at := range []int{redactChunk + redactWindow - 3, redactChunk - len(s)/2, 2*redactChunk + redactWindow - len(s) + 1} {
			in := bytes.Repeat([]byte("log line of no interest\n"), (3*redactChunk)/24)
			copy(in[at:], s)
			want := bytes.Clone(in)
			wantCounts := RedactText(want)
			for _, src := range []io.Reader{bytes.NewReader(in), iotest.OneByteReader(bytes.NewReader(in)), iotest.HalfReader(bytes.NewReader(in))} {
				r, counts := redactor{}.Reader(src)
				got, err := io.ReadAll(r)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("secret %.20q at %d: the stream differs from the whole-buffer redaction", s, at)
				}
				if !maps.Equal(counts(), wantCounts) || len(wantCounts) != 1 {
					t.Fatalf("secret %.20q at %d: counts %v, want %v", s, at, counts(), wantCounts)
				}
			}
		}
	}
}

func TestRedactingReaderPassesErrors(t *testing.T) {
	r, _ := redactor{}.Reader(iotest.ErrReader(io.ErrUnexpectedEOF))
	if _, err := io.ReadAll(r); err != io.ErrUnexpectedEOF {
		t.Fatalf("err %v, want the source's", err)
	}
}

// checkRedacted checks the invariants of a redaction of in into out:
// same length, no secret any pattern finds left, no private key body
// left, bytes changed only when something was counted, and a second
// redaction finds nothing.
func checkRedacted(t testing.TB, in string, out []byte, counts map[string]int64) {
	t.Helper()
	if len(out) != len(in) {
		t.Fatalf("length %d, want %d", len(out), len(in))
	}
	lower := asciiLower(out)
	for _, p := range valuePatterns {
		if start, end, _, _, ok := p.find(out, lower, 0); ok {
			t.Fatalf("%s left in the output: %q", p.kind, out[start:end])
		}
	}
	for _, loc := range pemBeginRE.FindAllIndex(out, -1) {
		body := out[loc[1]:]
		if end := pemBodyEnd(body); end >= 0 {
			body = body[:end]
		}
		if strings.Trim(string(body), "*\r\n") != "" {
			t.Fatalf("a private key body is left: %q", body)
		}
	}
	if len(counts) == 0 && string(out) != in {
		t.Fatalf("nothing counted, but the text changed: %q -> %q", in, out)
	}
	again := bytes.Clone(out)
	if c := RedactText(again); len(c) != 0 || !bytes.Equal(again, out) {
		t.Fatalf("a second redaction found %v", c)
	}
	r, streamCounts := redactor{}.Reader(strings.NewReader(in))
	streamed, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(streamed, out) || !maps.Equal(streamCounts(), counts) && len(counts)+len(streamCounts()) > 0 {
		t.Fatalf("the streaming redaction differs: %q (%v), counts %v", streamed, err, streamCounts())
	}
}

// FuzzRedact checks the redaction invariants on any input.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		"FIREBREAK_JOIN_TOKEN=" + testToken,
		"aws_secret_access_key = " + testSecretKey,
		`{"SessionToken": "` + testSessionTok + `"}`,
		testPEM,
		strings.ReplaceAll(testPEM, "\n", `\n`),
		"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,ABCDEF\n\nMIIE",
		"fbj_fbj_" + testToken[4:],
		"plain text with no secret",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := bytes.Clone(in)
		counts := RedactText(out)
		checkRedacted(t, string(in), out, counts)
	})
}
