package auth

import (
	"context"
	"encoding/hex"
	"sync"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// Streams holds the open streams of operators, keyed by operator name, so
// that revoking or replacing a credential closes them at once instead of
// letting them run on the strength of a check made when they opened.
type Streams struct {
	mu     sync.Mutex
	next   uint64
	byName map[string]map[uint64]openStream
}

type openStream struct {
	serial string
	cancel context.CancelCauseFunc
}

// NewStreams returns an empty registry.
func NewStreams() *Streams {
	return &Streams{byName: map[string]map[uint64]openStream{}}
}

// add registers a stream of operator name opened with a certificate of
// serial; the returned function unregisters it.
func (r *Streams) add(name, serial string, cancel context.CancelCauseFunc) func() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	key := r.next
	if r.byName[name] == nil {
		r.byName[name] = map[uint64]openStream{}
	}
	r.byName[name][key] = openStream{serial: serial, cancel: cancel}
	return func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		delete(r.byName[name], key)
		if len(r.byName[name]) == 0 {
			delete(r.byName, name)
		}
	}
}

// Close ends every open stream of operator name whose certificate serial
// is not keep (an empty keep closes them all), with cause as the reason.
// It returns how many it closed.
func (r *Streams) Close(name, keep string, cause error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, st := range r.byName[name] {
		if keep != "" && st.serial == keep {
			continue
		}
		st.cancel(cause)
		n++
	}
	return n
}

// ConnectionKey returns a value unique to the TLS connection the call came
// over (keying material exported from the TLS 1.3 session), or "" when
// there is none. Two calls share it only if they share the connection.
func ConnectionKey(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ""
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return ""
	}
	ekm, err := info.State.ExportKeyingMaterial("firebreak connection key", nil, 16)
	if err != nil {
		return ""
	}
	return hex.EncodeToString(ekm)
}
