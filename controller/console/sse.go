package console

import (
	"bytes"
	"fmt"
	"net/http"
)

// sseWriter writes Server-Sent Events to a response.
type sseWriter struct {
	w       http.ResponseWriter
	flusher http.Flusher
}

// startSSE answers with an event stream, or reports that the connection
// cannot stream.
func startSSE(w http.ResponseWriter) (*sseWriter, bool) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming is not supported by this connection", http.StatusInternalServerError)
		return nil, false
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	return &sseWriter{w: w, flusher: flusher}, true
}

// send writes one event whose data is data, line by line.
func (s *sseWriter) send(event string, data []byte) error {
	var b bytes.Buffer
	fmt.Fprintf(&b, "event: %s\n", event)
	for _, line := range bytes.Split(data, []byte("\n")) {
		b.WriteString("data: ")
		b.Write(line)
		b.WriteString("\n")
	}
	b.WriteString("\n")
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return err
	}
	s.flusher.Flush()
	return nil
}

// keepAlive writes a comment, so proxies keep an idle stream open.
func (s *sseWriter) keepAlive() error {
	if _, err := s.w.Write([]byte(": keep-alive\n\n")); err != nil {
		return err
	}
	s.flusher.Flush()
	return nil
}
