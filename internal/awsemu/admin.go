package awsemu

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// adminPrefix is where the emulator's own control API lives.
const adminPrefix = "/_emu/"

// faultWire is a Fault with its latency as a Go duration string.
type faultWire struct {
	Service       string  `json:"service,omitempty"`
	Operation     string  `json:"operation,omitempty"`
	ThrottleNext  int     `json:"throttleNext,omitempty"`
	ThrottleRatio float64 `json:"throttleRatio,omitempty"`
	Latency       string  `json:"latency,omitempty"`
}

// serveAdmin answers the control API:
//
//	GET    /_emu/dump        the State as JSON
//	POST   /_emu/seed        load a YAML seed from the body
//	GET    /_emu/calls       the call log as JSON (?service=&operation= filter)
//	GET    /_emu/counters    calls per "service:Operation"
//	GET    /_emu/operations  the operations served, by service
//	GET    /_emu/faults      the active faults
//	POST   /_emu/faults      install a fault (JSON; latency as "250ms")
//	DELETE /_emu/faults      remove every fault
//	POST   /_emu/messages    put the body on a queue (?account=&region=&queue=)
//	POST   /_emu/trail/deliver  write the organisation trail's pending log files
//	GET    /_emu/identity-certificate  the PEM certificate identity documents are signed with
//
// Security-critical: it answers only callers on the loopback interface,
// since it can rewrite any account's state without a signature.
func (e *Emulator) serveAdmin(w http.ResponseWriter, r *http.Request) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		http.Error(w, "the emulator's admin API answers only on loopback", http.StatusForbidden)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, adminPrefix)
	writeJSON := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(v)
	}
	body := func() ([]byte, bool) {
		b, err := io.ReadAll(io.LimitReader(r.Body, e.cfg.MaxBodyBytes))
		if err != nil {
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return nil, false
		}
		return b, true
	}
	switch {
	case path == "dump" && r.Method == http.MethodGet:
		writeJSON(e.Dump())
	case path == "seed" && r.Method == http.MethodPost:
		if err := e.LoadSeedYAML(http.MaxBytesReader(w, r.Body, e.cfg.MaxBodyBytes)); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	case path == "calls" && r.Method == http.MethodGet:
		svc, op := r.URL.Query().Get("service"), r.URL.Query().Get("operation")
		calls := []Call{}
		for _, c := range e.Calls() {
			if (svc == "" || c.Service == svc) && (op == "" || c.Operation == op) {
				calls = append(calls, c)
			}
		}
		writeJSON(calls)
	case path == "trail/deliver" && r.Method == http.MethodPost:
		writeJSON(map[string]int{"files": e.DeliverTrailLogs()})
	case path == "identity-certificate" && r.Method == http.MethodGet:
		pemCert, err := e.IdentityCertificatePEM()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Write(pemCert)
	case path == "counters" && r.Method == http.MethodGet:
		writeJSON(e.CallCounts())
	case path == "operations" && r.Method == http.MethodGet:
		writeJSON(e.Operations())
	case path == "faults" && r.Method == http.MethodGet:
		out := []faultWire{}
		for _, f := range e.Faults() {
			fw := faultWire{Service: f.Service, Operation: f.Operation, ThrottleNext: f.ThrottleNext, ThrottleRatio: f.ThrottleRatio}
			if f.Latency > 0 {
				fw.Latency = f.Latency.String()
			}
			out = append(out, fw)
		}
		writeJSON(out)
	case path == "faults" && r.Method == http.MethodPost:
		b, ok := body()
		if !ok {
			return
		}
		var fw faultWire
		if err := json.Unmarshal(b, &fw); err != nil {
			http.Error(w, "fault: "+err.Error(), http.StatusBadRequest)
			return
		}
		f := Fault{Service: fw.Service, Operation: fw.Operation, ThrottleNext: fw.ThrottleNext, ThrottleRatio: fw.ThrottleRatio}
		if fw.Latency != "" {
			d, err := time.ParseDuration(fw.Latency)
			if err != nil || d < 0 {
				http.Error(w, "fault latency must be a duration such as 250ms", http.StatusBadRequest)
				return
			}
			f.Latency = d
		}
		if f.ThrottleNext < 0 || f.ThrottleRatio < 0 || f.ThrottleRatio > 1 {
			http.Error(w, "throttleNext must not be negative and throttleRatio must be between 0 and 1", http.StatusBadRequest)
			return
		}
		e.SetFault(f)
		w.WriteHeader(http.StatusNoContent)
	case path == "faults" && r.Method == http.MethodDelete:
		e.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	case path == "messages" && r.Method == http.MethodPost:
		b, ok := body()
		if !ok {
			return
		}
		q := r.URL.Query()
		id, err := e.SendQueueMessage(q.Get("account"), q.Get("region"), q.Get("queue"), string(b))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		writeJSON(map[string]string{"messageId": id})
	default:
		http.Error(w, "unknown admin endpoint "+r.Method+" "+r.URL.Path, http.StatusNotFound)
	}
}
