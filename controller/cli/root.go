// Package cli is the `firebreak` command's base: the root command, the
// flags every command shares, the exit codes, and the operator commands,
// which talk to the controller only through the generated operator API
// (proto/gen) and the conversion layer (controller/apiview). Every command
// takes --json; exit codes mean something (see ExitCode).
//
// This package links no server package. The commands that do — the
// controller itself (servecmd), the lab (labcmd) and the fleet bench
// (benchcmd) — are subpackages, and the binary's composition root
// (controller/cmd/firebreak) names every top-level command in one list,
// passed to Main.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/term"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/firebreak-ir/firebreak/internal/pki"
	"github.com/firebreak-ir/firebreak/internal/telemetry"
	"github.com/firebreak-ir/firebreak/internal/termsafe"
	"github.com/firebreak-ir/firebreak/internal/version"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// Globals are the flags every command shares and the command's outputs.
// Commands of other packages reach them through JSON, Out, ErrOut and
// PrintJSON.
type Globals struct {
	controller string
	creds      string
	json       bool
	timeout    time.Duration
	// out and errOut pass text through termsafe (out only when not
	// --json: JSON is already escaped and stays lossless), so nothing a
	// controller relays from an agent or a finding acts on the terminal.
	out    io.Writer
	errOut io.Writer
	// bar is the raw stderr for the progress bars, which draw with
	// control characters of their own.
	bar io.Writer
	// dialConn, when set, connects to the controller instead of the
	// credential file's mTLS dial (tests serve the API in process).
	dialConn func() (*grpc.ClientConn, error)
}

// JSON reports whether --json was given: print JSON instead of tables.
func (g *Globals) JSON() bool { return g.json }

// Out is standard output. Text written to it is cleaned of control
// characters (see termsafe); with --json it is written as it is.
func (g *Globals) Out() io.Writer { return g.out }

// ErrOut is standard error, cleaned of control characters: progress notes
// and messages for the operator.
func (g *Globals) ErrOut() io.Writer { return g.errOut }

// progressOut is where progress bars draw: the raw stderr.
func (g *Globals) progressOut() io.Writer {
	if g.bar != nil {
		return g.bar
	}
	return g.errOut
}

// rawOut is standard output without cleaning, for JSON documents.
func (g *Globals) rawOut() io.Writer {
	if t, ok := g.out.(*textOut); ok {
		return t.raw
	}
	return g.out
}

// textOut cleans what is printed as text and leaves JSON as it is.
type textOut struct {
	g     *Globals
	raw   io.Writer
	clean *termsafe.Writer
}

func (t *textOut) Write(p []byte) (int, error) {
	if t.g.json {
		return t.raw.Write(p)
	}
	return t.clean.Write(p)
}

// clean makes an untrusted value safe inside a table row or on one line:
// no control character, and no tab or line feed that would shift columns
// or add a row (see termsafe for what is escaped and how).
func clean(s string) string { return termsafe.Clean(s, 0) }

// Command builds one top-level command.
type Command func(*Globals) *cobra.Command

// Main runs the command line with the top-level commands cmds and returns
// the process exit code.
func Main(args []string, cmds []Command) int {
	g, flush := newGlobals(os.Stdout, os.Stderr)
	defer flush()
	root := NewRoot(g, cmds)
	root.SetArgs(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, finish := startTelemetry(ctx, root, args)
	err := root.ExecuteContext(ctx)
	finish(err)
	return g.exit(err)
}

// newGlobals writes text to stdout and stderr through termsafe; flush
// writes out what termsafe holds back.
func newGlobals(stdout, stderr io.Writer) (g *Globals, flush func()) {
	clean, errOut := termsafe.NewWriter(stdout), termsafe.NewWriter(stderr)
	g = &Globals{errOut: errOut, bar: stderr}
	g.out = &textOut{g: g, raw: stdout, clean: clean}
	return g, func() {
		_ = clean.Flush()
		_ = errOut.Flush()
	}
}

// exit prints what a command returned, if anything, and returns its exit
// code.
func (g *Globals) exit(err error) int {
	var ee *exitError
	if err != nil && (!errors.As(err, &ee) || ee.err != nil) {
		fmt.Fprintln(g.errOut, "firebreak:", err)
	}
	return ExitCode(err)
}

// startTelemetry sets up OpenTelemetry for the command about to run. The
// controller (and the lab, which holds one) is a service; every other
// command is an operator command whose root span starts the trace that
// rides the gRPC metadata into the controller. finish ends the span and
// flushes with a fresh, bounded context: the command's own may be cancelled.
func startTelemetry(ctx context.Context, root *cobra.Command, args []string) (context.Context, func(error)) {
	cmd, _, err := root.Find(args)
	if err != nil || cmd == nil || cmd == root {
		return ctx, func(error) {}
	}
	path := strings.TrimPrefix(cmd.CommandPath(), root.Name()+" ")
	top := strings.Fields(path)[0]
	service := "firebreak-cli"
	switch top {
	case "controller":
		service = "firebreak-controller"
	case "lab", "bench":
		service = "firebreak-" + top
	case "version", "help", "completion":
		return ctx, func(error) {}
	}
	tel, err := telemetry.Setup(ctx, telemetry.Config{Service: service, Version: Version, DetectEC2: top == "controller",
		Metrics: top == "controller" || top == "lab"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "firebreak: telemetry is off:", err)
		return ctx, func(error) {}
	}
	if top == "controller" {
		return ctx, func(error) { _ = tel.Shutdown() }
	}
	ctx, span := telemetry.Tracer().Start(ctx, "firebreak "+path, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("process.command", "firebreak"), attribute.String("firebreak.command", path)))
	return ctx, func(err error) {
		var ee *exitError
		switch {
		case err == nil:
		case errors.As(err, &ee) && (ee.err == nil || ee.code == ExitAwaitingApproval || ee.code == ExitRejected):
			// Waiting for approval or a rejection is an outcome, not a fault.
			span.SetAttributes(attribute.Int("process.exit.code", ee.code))
		default:
			span.RecordError(err)
			span.SetStatus(otelcodes.Error, err.Error())
		}
		span.End()
		_ = tel.Shutdown()
	}
}

// NewRoot builds the command tree: the root command with the shared flags
// and the top-level commands cmds.
func NewRoot(g *Globals, cmds []Command) *cobra.Command {
	root := &cobra.Command{
		Use:   "firebreak",
		Short: "Incident response for AWS organisations: isolate, collect, contain",
		Long: `Firebreak runs response actions across a fleet of host agents and API workers.

The controller (firebreak controller) holds the fleet's state; every other
command is an operator command that talks to it over mTLS, using the
credential file given by --creds or FIREBREAK_CREDS.

Exit codes: 0 ok · 1 error · 2 usage · 3 run had failed targets ·
4 run awaits approval · 5 run rejected or cancelled · 6 verification failed.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.controller, "controller", os.Getenv("FIREBREAK_CONTROLLER"), "controller address HOST:PORT (env FIREBREAK_CONTROLLER; default: the one in the credential file)")
	pf.StringVar(&g.creds, "creds", os.Getenv("FIREBREAK_CREDS"), "operator credential file (env FIREBREAK_CREDS)")
	pf.BoolVar(&g.json, "json", false, "print JSON instead of tables")
	pf.DurationVar(&g.timeout, "timeout", 30*time.Second, "how long to wait for the controller on each request")
	for _, cmd := range cmds {
		root.AddCommand(cmd(g))
	}
	// cobra adds these on Execute; added now, their errors are tagged too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	tagCommandErrors(root)
	return root
}

// tagCommandErrors marks what the RunE of cmd and of every command under it
// returns as the command's own error, so ExitCode tells it from cobra's
// errors about the command line, by type rather than by text.
func tagCommandErrors(cmd *cobra.Command) {
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if err := run(c, args); err != nil {
				return &commandError{err: err}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		tagCommandErrors(sub)
	}
}

// Version is the firebreak command's version.
const Version = version.Version

// NewVersionCmd is `firebreak version`.
func NewVersionCmd(g *Globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.json {
				return g.PrintJSON(map[string]string{"version": Version})
			}
			fmt.Fprintln(g.out, "firebreak", Version)
			return nil
		},
	}
}

// client is a connection to the controller as an operator.
type client struct {
	conn *grpc.ClientConn
	op   operatorv1.OperatorServiceClient
}

func (g *Globals) dial() (*client, error) {
	if g.dialConn != nil {
		conn, err := g.dialConn()
		if err != nil {
			return nil, err
		}
		return &client{conn: conn, op: operatorv1.NewOperatorServiceClient(conn)}, nil
	}
	if g.creds == "" {
		return nil, ExitWith(ExitUsage, errors.New("no operator credential: pass --creds FILE or set FIREBREAK_CREDS (the controller writes DATA_DIR/admin.creds on first start)"))
	}
	creds, err := pki.LoadCreds(g.creds)
	if err != nil {
		return nil, err
	}
	addr := g.controller
	if addr == "" {
		addr = creds.Controller
	}
	if addr == "" {
		return nil, ExitWith(ExitUsage, errors.New("no controller address: pass --controller HOST:PORT or set FIREBREAK_CONTROLLER"))
	}
	tlsCfg, err := creds.TLS()
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()), grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	return &client{conn: conn, op: operatorv1.NewOperatorServiceClient(conn)}, nil
}

func (c *client) Close() { _ = c.conn.Close() }

// open dials the controller and bounds the request by --timeout; done
// releases both.
func (g *Globals) open(parent context.Context) (*client, context.Context, func(), error) {
	c, err := g.dial()
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := g.ctx(parent)
	return c, ctx, func() { cancel(); c.Close() }, nil
}

// ctx bounds one request.
func (g *Globals) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, g.timeout)
}

// ctxWith bounds one long request.
func (g *Globals) ctxWith(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, d)
}

// PrintJSON writes v to standard output as indented JSON.
func (g *Globals) PrintJSON(v any) error {
	enc := json.NewEncoder(g.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// parseKV parses repeated k=v flags.
func parseKV(flag string, items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, ExitWith(ExitUsage, fmt.Errorf("--%s %q: want key=value", flag, it))
		}
		out[strings.TrimSpace(k)] = v
	}
	return out, nil
}
