package intake

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/firebreak-ir/firebreak/controller/finding"
	"github.com/firebreak-ir/firebreak/controller/store"
	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// EventsPath is the path events are posted to.
const EventsPath = "/v1/events"

// SecretHeader carries the shared secret of an EventBridge API destination
// (an API-key connection with this header name).
const SecretHeader = "X-Firebreak-Secret"

// MinSecretLength is the shortest shared secret accepted.
const MinSecretLength = 32

// DefaultBodyTimeout is how long a sender has to deliver an event's body.
// An event is at most finding.MaxEventSize bytes: even a slow link sends
// it in well under this.
const DefaultBodyTimeout = 10 * time.Second

// OperatorLookup finds operators; store.Store satisfies it.
type OperatorLookup interface {
	// GetOperator returns one operator or store.ErrNotFound.
	GetOperator(ctx context.Context, name string) (*store.Operator, error)
}

// HandlerConfig configures the events endpoint.
type HandlerConfig struct {
	// Operators authenticates operator client certificates.
	Operators OperatorLookup
	// Secret is the shared secret EventBridge API destinations send in
	// SecretHeader; nil accepts operator certificates only.
	Secret []byte
	// MaxInFlight bounds the events processed at once (default 16); more
	// are answered 429 so the sender retries. A request takes a slot only
	// once its whole body has arrived, so slow senders hold none.
	MaxInFlight int
	// BodyTimeout bounds the reading of one request's body (default
	// DefaultBodyTimeout); a slower body is refused with 408.
	BodyTimeout time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// ReadSecretFile reads a shared secret file: its content, without the
// trailing newline, at least MinSecretLength bytes long.
func ReadSecretFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading the events secret: %w", err)
	}
	// Security-critical: a secret other users can read is a leaked secret.
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the events secret file %s is readable by other users (mode %v): run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the events secret: %w", err)
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) < MinSecretLength {
		return nil, fmt.Errorf("the events secret in %s is %d bytes; use at least %d random characters", path, len(b), MinSecretLength)
	}
	return b, nil
}

// Handler returns the HTTP handler of POST /v1/events.
//
// A request is authenticated by an operator client certificate (verified by
// the TLS layer against the controller CA, then checked like any operator
// call: known, not revoked, current serial, at least responder) or, when a
// secret is configured, by SecretHeader. The body is at most
// finding.MaxEventSize bytes. Answers: 200 with {"outcomes": [...]};
// 400 with {"error": reason} for a refused event; 401, 403, 405, 408 (the
// body did not arrive within BodyTimeout), 413, 429;
// 503 when the finding could not be stored (send it again).
func (in *Intake) Handler(cfg HandlerConfig) http.Handler {
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 16
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	var secretSum [32]byte
	if cfg.Secret != nil {
		secretSum = sha256.Sum256(cfg.Secret)
	}
	slots := make(chan struct{}, cfg.MaxInFlight)
	mux := http.NewServeMux()
	mux.HandleFunc(EventsPath, func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				cfg.Logger.Error("the events endpoint panicked", "panic", p)
				writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error"})
			}
		}()
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST with an EventBridge event as the JSON body"})
			return
		}
		actor, code, err := in.authenticate(r, cfg, secretSum)
		if err != nil {
			writeJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		// Security-critical: the body is read, capped and under a deadline,
		// before a slot is taken, so senders that trickle their bodies
		// cannot hold the slots and keep real events out.
		body, code, err := readBody(w, r, cfg.BodyTimeout)
		if err != nil {
			writeJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
		default:
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "too many events at once; retry"})
			return
		}
		// A sender that passes the secret may name the trace the finding
		// continues (W3C traceparent and tracestate headers); it decides
		// nothing but where the spans are filed.
		ctx := telemetry.ExtractTraceContext(r.Context(), r.Header.Get("traceparent"), r.Header.Get("tracestate"))
		outcomes, err := in.Submit(ctx, actor, body)
		var ee *EventError
		switch {
		case errors.As(err, &ee):
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": ee.Error()})
		case err != nil:
			cfg.Logger.Error("recording a finding failed", "actor", actor, "error", err)
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "the finding could not be recorded; send it again"})
		default:
			writeJSON(w, http.StatusOK, map[string]any{"outcomes": outcomes})
		}
	})
	return mux
}

// readBody reads a request's body, at most finding.MaxEventSize bytes,
// within timeout, or returns the HTTP status and reason of a refusal.
func readBody(w http.ResponseWriter, r *http.Request, timeout time.Duration) ([]byte, int, error) {
	// The server's ReadTimeout bounds the body too where the connection
	// cannot take a deadline of its own.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, finding.MaxEventSize))
	if err == nil {
		return body, 0, nil
	}
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooBig):
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("the event is larger than %d bytes", finding.MaxEventSize)
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return nil, http.StatusRequestTimeout, fmt.Errorf("the body did not arrive within %s", timeout)
	default:
		return nil, http.StatusBadRequest, errors.New("reading the body: " + err.Error())
	}
}

// authenticate returns who is posting, or the HTTP status and reason of a
// refusal.
func (in *Intake) authenticate(r *http.Request, cfg HandlerConfig, secretSum [32]byte) (string, int, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		leaf := r.TLS.VerifiedChains[0][0]
		id, err := pki.IdentityFromCert(leaf)
		if err != nil {
			return "", http.StatusForbidden, fmt.Errorf("the client certificate: %v", err)
		}
		// Security-critical: only operators may post findings with a
		// certificate; an agent certificate must not drive the intake.
		if id.Kind != pki.KindOperator {
			return "", http.StatusForbidden, fmt.Errorf("events are for operators; the caller is %s %q", id.Kind, id.Name)
		}
		op, err := cfg.Operators.GetOperator(r.Context(), id.Name)
		if errors.Is(err, store.ErrNotFound) {
			return "", http.StatusForbidden, fmt.Errorf("operator %q is not known to this controller", id.Name)
		}
		if err != nil {
			return "", http.StatusServiceUnavailable, errors.New("looking up the operator failed")
		}
		// Security-critical: a revoked or re-issued credential stops working
		// at once, as on the gRPC API.
		if op.Revoked || op.CertSerial != id.Serial {
			return "", http.StatusForbidden, fmt.Errorf("the credential of operator %q has been revoked or replaced", id.Name)
		}
		if op.Role < operatorv1.OperatorRole_OPERATOR_ROLE_RESPONDER {
			return "", http.StatusForbidden, fmt.Errorf("operator %q may not send findings: that needs the responder role", id.Name)
		}
		return "operator:" + op.Name, 0, nil
	}
	given := r.Header.Get(SecretHeader)
	if cfg.Secret == nil || given == "" {
		return "", http.StatusUnauthorized, fmt.Errorf("present an operator client certificate or the %s header", SecretHeader)
	}
	// Security-critical: compare digests in constant time, so neither the
	// secret's bytes nor its length leak through timing.
	givenSum := sha256.Sum256([]byte(given))
	if subtle.ConstantTimeCompare(givenSum[:], secretSum[:]) != 1 {
		return "", http.StatusUnauthorized, fmt.Errorf("the %s header does not match", SecretHeader)
	}
	return "intake/eventbridge", 0, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// EventsTLS is the events listener's TLS configuration: the controller's
// serving certificate, TLS 1.2 or later (EventBridge API destinations speak
// 1.2), HTTP/2 or 1.1, and client certificates verified against the
// controller CA when given.
func EventsTLS(ca *pki.CA, cert tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    ca.Pool(),
		NextProtos:   []string{"h2", "http/1.1"},
	}
}

// Serve serves h over TLS on lis until ctx ends, then shuts down
// gracefully.
func Serve(ctx context.Context, lis net.Listener, tlsCfg *tls.Config, h http.Handler, logger *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(lis, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
