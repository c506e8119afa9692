package controller

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/firebreak-ir/firebreak/controller/cases"
	"github.com/firebreak-ir/firebreak/controller/console"
	"github.com/firebreak-ir/firebreak/internal/pki"
)

// ConsoleAddrFile, in the data directory, holds the address the web
// console is served on (useful with port 0).
const ConsoleAddrFile = "console.addr"

// ConsoleConfig configures the web console.
type ConsoleConfig struct {
	// Listen is the HOST:PORT the console is served on over HTTPS
	// (--console-listen); empty serves no console.
	Listen string
	// CertFile and KeyFile are a certificate and key for the console
	// (--console-cert, --console-key), for a public certificate behind a
	// load balancer; without them the console uses the controller's
	// CA-issued serving certificate.
	CertFile, KeyFile string
	// URL is where browsers reach the console, https://HOST[:PORT]
	// (--console-url); the login links name it. Default: https:// and the
	// console's listen address (the host name when it listens on all
	// addresses).
	URL string
	// OIDC, when set, adds single sign-on.
	OIDC *console.OIDCConfig
}

// consoleParts are the console's built parts.
type consoleParts struct {
	console *console.Console
	lis     net.Listener
	tls     *tls.Config
}

// consoleNames are the names the CA-issued serving certificate must also
// carry for the console: its listen host.
func (c *Controller) consoleNames() []string {
	if c.cfg.Console.Listen == "" {
		return nil
	}
	if h, _, err := net.SplitHostPort(c.cfg.Console.Listen); err == nil && h != "" {
		return []string{h}
	}
	return nil
}

// buildConsole binds the console's listener and builds it, with cert (the
// controller's CA-issued serving certificate) unless a certificate file
// is given.
func (c *Controller) buildConsole(ctx context.Context, cert tls.Certificate) error {
	cc := c.cfg.Console
	if cc.Listen == "" {
		return nil
	}
	if (cc.CertFile == "") != (cc.KeyFile == "") {
		return fmt.Errorf("controller: --console-cert and --console-key go together")
	}
	if cc.CertFile != "" {
		var err error
		if cert, err = tls.LoadX509KeyPair(cc.CertFile, cc.KeyFile); err != nil {
			return fmt.Errorf("controller: loading --console-cert %s and --console-key %s: %w", cc.CertFile, cc.KeyFile, err)
		}
	}
	lis, err := net.Listen("tcp", cc.Listen)
	if err != nil {
		return fmt.Errorf("listening for the console on %s: %w", cc.Listen, err)
	}
	url := cc.URL
	if url == "" {
		host, port, _ := net.SplitHostPort(lis.Addr().String())
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			if host, err = os.Hostname(); err != nil {
				host = "localhost"
			}
		}
		url = "https://" + net.JoinHostPort(host, port)
	}
	var sso *console.OIDC
	if cc.OIDC != nil {
		if sso, err = console.NewOIDC(ctx, *cc.OIDC, url); err != nil {
			lis.Close()
			return err
		}
	}
	con, err := console.New(console.Config{Store: c.Store, Operator: c.Operator, Evidence: c.Evidence, Cases: c.Incident.parts.caseServer,
		Playbooks: c.Incident.parts.playbookServer, CaseChanges: caseChanges(c.Cases), Policy: rpcPolicy().Operator, BaseURL: url, OIDC: sso,
		Audit: c.Audit, Logger: c.cfg.Logger, Clock: c.cfg.Clock})
	if err != nil {
		lis.Close()
		return err
	}
	c.console = consoleParts{console: con, lis: lis, tls: console.TLSConfig(cert)}
	return nil
}

// ConsoleAddr is the address the console is served on, empty when none is.
func (c *Controller) ConsoleAddr() string {
	if c.console.lis == nil {
		return ""
	}
	return c.console.lis.Addr().String()
}

// runConsole serves the console until ctx ends, when one is configured.
func (c *Controller) runConsole(run func(string, func(context.Context) error)) {
	if c.console.lis == nil {
		return
	}
	addr := c.console.lis.Addr().String()
	_ = pki.WriteFileAtomic(filepath.Join(c.cfg.DataDir, ConsoleAddrFile), []byte(addr+"\n"), 0o600)
	c.cfg.Logger.Info("serving the console", "addr", addr)
	run("console", func(ctx context.Context) error {
		return console.Serve(ctx, c.console.lis, c.console.tls, c.console.console, c.cfg.Logger)
	})
}

// ConsoleLoginLink returns a one-time login link to the console for the
// stored operator name (the lab prints one); it fails when no console is
// served.
func (c *Controller) ConsoleLoginLink(ctx context.Context, operator string) (string, error) {
	if c.console.console == nil {
		return "", fmt.Errorf("controller: no console is served: set Console.Listen")
	}
	resp, err := c.console.console.LoginLink(ctx, operator)
	if err != nil {
		return "", err
	}
	return resp.GetUrl(), nil
}

// caseChanges is the case service's change notices for the console, or
// none (the console then reads a live case every second) without a case
// service.
func caseChanges(s *cases.Service) console.CaseChanges {
	if s == nil {
		return nil
	}
	return s.Changes()
}
