package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// PartBytes is the size at which an artifact's buffered records are written
// out as one archive member. Tar needs each member's size before its bytes,
// so records are held in memory up to this bound and a large artifact is
// split into numbered parts rather than spooled to disk.
const PartBytes = 4 << 20

// OutputBufferBytes is the size of the buffer between the compressor and the
// destination: writes reach the destination in pieces of this size, which
// matches the plugin SDK's artifact chunk.
const OutputBufferBytes = 256 << 10

const copyBufferBytes = 64 << 10

// Meta is what a Writer records about the collection in the manifest.
type Meta struct {
	// Collector, Profile, Host, Task and Limits go to the manifest as given.
	Collector Collector
	Profile   string
	Host      HostIdentity
	Task      TaskIdentity
	Limits    Limits
	// StartedAt defaults to the clock's now.
	StartedAt time.Time
	// Clock defaults to time.Now; tests inject it.
	Clock func() time.Time
	// Redactor, when set, removes secrets from every record and from the
	// file copies added with FileOptions.Redact, and its policy goes to
	// the manifest.
	Redactor Redactor
}

// Redactor removes secrets from what a bundle records. It keeps lengths:
// a secret is overwritten, never cut out, so offsets into a copy stay
// true. Kinds name what was replaced (e.g. "private-key").
type Redactor interface {
	// Redact overwrites the secrets in b and returns how many of each
	// kind it replaced (nil for none).
	Redact(b []byte) map[string]int64
	// Reader returns a reader of exactly r's bytes with the secrets
	// overwritten; counts says what it replaced once the reader has
	// returned io.EOF or an error.
	Reader(r io.Reader) (rd io.Reader, counts func() map[string]int64)
	// Policy says what is redacted and how, for the manifest.
	Policy() string
}

// Stats describes a written archive.
type Stats struct {
	// Members counts the archive members, the manifest included.
	Members int `json:"members"`
	// PayloadBytes counts the uncompressed bytes of all members but the manifest.
	PayloadBytes int64 `json:"payload_bytes"`
	// CompressedBytes is the size of the compressed stream.
	CompressedBytes int64 `json:"compressed_bytes"`
	// SHA256 is the hex SHA-256 of the compressed stream, set by Close.
	SHA256 string `json:"sha256,omitempty"`
}

// Writer streams an evidence bundle. It hashes every member as it writes it
// and writes the manifest on Close. It is not safe for concurrent use.
//
// Every member counts against Limits.MaxBytes (0 means no cap): a copy is
// cut to what remains, marked truncated, and once nothing remains the add
// methods return ErrCapReached. The manifest itself is not counted.
type Writer struct {
	out     *hashingWriter
	buf     *bufio.Writer
	comp    io.WriteCloser
	tw      *tar.Writer
	clock   func() time.Time
	m       Manifest
	names   map[string]bool
	sources map[string]int // host path → index of its member
	open    []*ArtifactWriter
	payload int64
	err     error
	closed  bool
	copyBuf []byte
	// redactor, when set, removes secrets from records and marked copies.
	redactor Redactor
}

// NewWriter starts a bundle written to w with the given compression ("" is
// gzip). An unknown compression is reported by the first add and by Close.
func NewWriter(w io.Writer, compression Compression, meta Meta) *Writer {
	if compression == "" {
		compression = Gzip
	}
	clock := meta.Clock
	if clock == nil {
		clock = time.Now
	}
	started := meta.StartedAt
	if started.IsZero() {
		started = clock()
	}
	bw := &Writer{
		out:      &hashingWriter{w: w, h: sha256.New()},
		clock:    clock,
		redactor: meta.Redactor,
		m: Manifest{
			FormatVersion: FormatVersion,
			Collector:     meta.Collector,
			Profile:       meta.Profile,
			Compression:   compression,
			Host:          meta.Host,
			Task:          meta.Task,
			StartedAt:     started.UTC(),
			Limits:        meta.Limits,
			Artifacts:     []ArtifactStatus{},
			Members:       []Member{},
		},
		names:   map[string]bool{},
		sources: map[string]int{},
		copyBuf: make([]byte, copyBufferBytes),
	}
	if meta.Redactor != nil {
		bw.m.Redaction = meta.Redactor.Policy()
	}
	bw.buf = bufio.NewWriterSize(bw.out, OutputBufferBytes)
	switch compression {
	case Gzip:
		bw.comp = gzip.NewWriter(bw.buf)
	case Zstd:
		// One goroutine and a small window keep the encoder's memory to a
		// few MiB whatever the archive size.
		enc, err := zstd.NewWriter(bw.buf, zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(4<<20),
			zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(true))
		if err != nil {
			bw.err = fmt.Errorf("starting the zstd encoder: %w", err)
			return bw
		}
		bw.comp = enc
	default:
		bw.err = fmt.Errorf("%w %q: use gzip or zstd", ErrUnknownCompression, compression)
		return bw
	}
	bw.tw = tar.NewWriter(bw.comp)
	return bw
}

// Remaining returns the bytes left under the total cap, or -1 when there is
// no cap.
func (w *Writer) Remaining() int64 {
	if w.m.Limits.MaxBytes <= 0 {
		return -1
	}
	return max(w.m.Limits.MaxBytes-w.payload, 0)
}

// MarkTruncated records that the whole collection was cut short, e.g. by
// its time budget.
func (w *Writer) MarkTruncated(reason string) {
	w.m.Truncated = true
	for _, r := range w.m.TruncatedReasons {
		if r == reason {
			return
		}
	}
	w.m.TruncatedReasons = append(w.m.TruncatedReasons, reason)
}

// Artifact starts an artifact. Its records go to artifacts/<name>.jsonl;
// its raw files and memory regions are linked to it in the manifest.
func (w *Writer) Artifact(name string) *ArtifactWriter {
	a := &ArtifactWriter{w: w, idx: len(w.m.Artifacts)}
	a.records = &partBuffer{kind: KindRecords, ext: "jsonl"}
	a.enc = json.NewEncoder(&a.records.buf)
	a.enc.SetEscapeHTML(false)
	w.m.Artifacts = append(w.m.Artifacts, ArtifactStatus{Name: name, Status: StatusOK})
	if !ArtifactName(name) {
		a.Fail(fmt.Sprintf("invalid artifact name %q", name))
		a.closed = true
		return a
	}
	for _, st := range w.m.Artifacts[:a.idx] {
		if st.Name == name {
			a.Fail(fmt.Sprintf("artifact %q was already collected in this bundle", name))
			a.closed = true
			return a
		}
	}
	w.open = append(w.open, a)
	return a
}

// Close closes any artifact still open, writes the manifest as the last
// member and ends the compressed stream. It does not close the destination.
func (w *Writer) Close() error {
	if w.closed {
		return w.err
	}
	for len(w.open) > 0 {
		if _, err := w.open[0].Close(); err != nil && !errors.Is(err, ErrCapReached) && w.err == nil {
			w.err = err
		}
	}
	w.closed = true
	if w.err != nil {
		return w.err
	}
	w.m.FinishedAt = w.clock().UTC()
	for _, st := range w.m.Artifacts {
		if st.Truncated {
			w.m.Truncated = true
		}
	}
	b, err := json.MarshalIndent(&w.m, "", " ")
	if err != nil {
		w.err = fmt.Errorf("encoding the manifest: %w", err)
		return w.err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: ManifestName, Size: int64(len(b)), Mode: 0o644,
		ModTime: w.m.FinishedAt.Truncate(time.Second)}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return w.fail("writing the manifest header", err)
	}
	if _, err := w.tw.Write(b); err != nil {
		return w.fail("writing the manifest", err)
	}
	if err := w.tw.Close(); err != nil {
		return w.fail("ending the tar stream", err)
	}
	if err := w.comp.Close(); err != nil {
		return w.fail("ending the compressed stream", err)
	}
	if err := w.buf.Flush(); err != nil {
		return w.fail("flushing the archive", err)
	}
	return nil
}

// Stats describes the archive written so far; SHA256 is set after Close.
func (w *Writer) Stats() Stats {
	s := Stats{Members: len(w.m.Members), PayloadBytes: w.payload, CompressedBytes: w.out.n}
	if w.closed && w.err == nil {
		s.Members++
		s.SHA256 = hex.EncodeToString(w.out.h.Sum(nil))
	}
	return s
}

// Err returns the error that stopped the Writer, if any: once the
// destination fails, every add fails with it.
func (w *Writer) Err() error { return w.err }

// Manifest returns the manifest as it stands (complete after Close). The
// caller must not modify it.
func (w *Writer) Manifest() *Manifest { return &w.m }

func (w *Writer) fail(what string, err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("%s: %w", what, err)
	}
	return w.err
}

func (w *Writer) usable() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return errors.New("the bundle is already closed")
	}
	return nil
}

// writeMember writes one member of exactly size bytes from r. When r ends
// early or fails, the rest is written as zeros and counted in ZeroFilled, so
// the archive stays well formed and the gap is on record. The caller has
// already checked the cap.
func (w *Writer) writeMember(m Member, size int64, r io.Reader) (*Member, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	if err := CheckName(m.Path); err != nil {
		return nil, err
	}
	if w.names[m.Path] || m.Path == ManifestName {
		return nil, fmt.Errorf("%w: %q", ErrDuplicate, m.Path)
	}
	m.CollectedAt = w.clock().UTC()
	mod := m.CollectedAt
	if m.ModTime != nil && m.ModTime.Unix() > 0 {
		mod = *m.ModTime
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: m.Path, Size: size, Mode: 0o644, ModTime: mod.Truncate(time.Second)}
	if err := w.tw.WriteHeader(hdr); err != nil {
		return nil, w.fail("writing a member header", err)
	}
	h := sha256.New()
	dst := wrapWriteErrors{io.MultiWriter(w.tw, h)}
	n, err := io.CopyBuffer(dst, io.LimitReader(onlyReader{r}, size), w.copyBuf)
	if err != nil {
		var werr *writeError
		if errors.As(err, &werr) {
			return nil, w.fail("writing member "+m.Path, werr.err)
		}
		m.TruncatedReason = joinReason(m.TruncatedReason, fmt.Sprintf("read error after %d bytes: %v", n, err))
	}
	if n < size {
		if err := writeZeros(dst, size-n, w.copyBuf); err != nil {
			return nil, w.fail("writing member "+m.Path, err)
		}
		m.ZeroFilled += size - n
		if err == nil {
			m.TruncatedReason = joinReason(m.TruncatedReason, fmt.Sprintf("source ended after %d of %d bytes", n, size))
		}
	}
	m.Size = size
	m.SHA256 = hex.EncodeToString(h.Sum(nil))
	w.names[m.Path] = true
	w.m.Members = append(w.m.Members, m)
	w.payload += size
	if m.Kind == KindFile && m.Source != "" {
		w.sources[m.Source] = len(w.m.Members) - 1
	}
	return &w.m.Members[len(w.m.Members)-1], nil
}

func writeZeros(dst io.Writer, n int64, buf []byte) error {
	clear(buf)
	for n > 0 {
		c := min(n, int64(len(buf)))
		if _, err := dst.Write(buf[:c]); err != nil {
			return err
		}
		n -= c
	}
	return nil
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// onlyReader hides WriterTo/ReaderFrom so CopyBuffer uses the bounded buffer
// and so a destination failure can be told from a source failure.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

type writeError struct{ err error }

// wrapWriteErrors marks the destination's errors so writeMember can tell a
// broken archive (fatal) from an unreadable source (recorded, zero-filled).
type wrapWriteErrors struct{ w io.Writer }

func (w wrapWriteErrors) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		err = &writeError{err}
	}
	return n, err
}

func (e *writeError) Error() string { return e.err.Error() }

// hashingWriter counts and hashes the compressed stream on its way out.
type hashingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (hw *hashingWriter) Write(p []byte) (int, error) {
	n, err := hw.w.Write(p)
	hw.h.Write(p[:n])
	hw.n += int64(n)
	return n, err
}

// ArtifactWriter collects one artifact into a bundle: its records, its
// renderings, the raw files and memory regions that back it, and the items
// that could not be read.
type ArtifactWriter struct {
	w          *Writer
	idx        int
	records    *partBuffer
	enc        *json.Encoder
	renderings []*partBuffer
	full       bool
	closed     bool
}

// partBuffer holds the pending bytes of a records or rendering member.
type partBuffer struct {
	kind string
	ext  string
	part int
	buf  bytes.Buffer
	// redactions counts what was redacted in the pending bytes.
	redactions map[string]int64
}

// addCounts adds the counts of b to a, allocating a when needed.
func addCounts(a, b map[string]int64) map[string]int64 {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = make(map[string]int64, len(b))
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}

// noteRedactions records on a member and its artifact what was redacted
// from the member's bytes.
func (a *ArtifactWriter) noteRedactions(m *Member, counts map[string]int64) {
	if len(counts) == 0 {
		return
	}
	m.Redactions = addCounts(m.Redactions, counts)
	st := a.status()
	st.Redactions = addCounts(st.Redactions, counts)
}

func (a *ArtifactWriter) status() *ArtifactStatus { return &a.w.m.Artifacts[a.idx] }

// Name returns the artifact's name.
func (a *ArtifactWriter) Name() string { return a.status().Name }

// Record appends one record to the artifact's JSON Lines. It returns
// ErrCapReached once the bundle's byte cap is spent; the collector should
// then stop the artifact.
func (a *ArtifactWriter) Record(v any) error {
	if err := a.writable(); err != nil {
		return err
	}
	start := a.records.buf.Len()
	if err := a.enc.Encode(v); err != nil {
		return fmt.Errorf("encoding a record of artifact %q: %w", a.Name(), err)
	}
	if a.w.redactor != nil {
		// The encoded record is redacted in place; JSON escapes keep any
		// secret within one string, which the redactor never leaves.
		if n := a.w.redactor.Redact(a.records.buf.Bytes()[start:]); len(n) > 0 {
			a.records.redactions = addCounts(a.records.redactions, n)
		}
	}
	if a.records.buf.Len() >= PartBytes {
		return a.flush(a.records)
	}
	return nil
}

// NoteRecordRedactions records secrets the caller overwrote, by kind, in
// the record it adds next (such as an environment variable redacted by its
// name); they are counted with the records member that holds it.
func (a *ArtifactWriter) NoteRecordRedactions(counts map[string]int64) {
	a.records.redactions = addCounts(a.records.redactions, counts)
}

// RenderLine appends one line (without its newline) to the artifact's
// rendering with the given extension, e.g. "body" for a TSK bodyfile.
func (a *ArtifactWriter) RenderLine(ext, line string) error {
	if err := a.writable(); err != nil {
		return err
	}
	var pb *partBuffer
	for _, r := range a.renderings {
		if r.ext == ext {
			pb = r
		}
	}
	if pb == nil {
		pb = &partBuffer{kind: KindRendering, ext: ext}
		a.renderings = append(a.renderings, pb)
	}
	pb.buf.WriteString(line)
	pb.buf.WriteByte('\n')
	if pb.buf.Len() >= PartBytes {
		return a.flush(pb)
	}
	return nil
}

func (a *ArtifactWriter) writable() error {
	if a.closed {
		return fmt.Errorf("artifact %q is closed", a.Name())
	}
	if a.full {
		return ErrCapReached
	}
	return a.w.usable()
}

// flush writes a part buffer out as a member, cut at the last whole line
// that fits under the cap.
func (a *ArtifactWriter) flush(pb *partBuffer) error {
	data := pb.buf.Bytes()
	var capErr error
	if rem := a.w.Remaining(); rem >= 0 && int64(len(data)) > rem {
		cut := bytes.LastIndexByte(data[:rem], '\n') + 1
		a.Truncate(fmt.Sprintf("the bundle's byte cap (%d bytes) was reached", a.w.m.Limits.MaxBytes))
		data = data[:cut]
		a.full = true
		capErr = ErrCapReached
	}
	if len(data) == 0 && pb.part > 0 {
		pb.buf.Reset()
		return capErr
	}
	pb.part++
	path := RecordsPath(a.Name(), pb.part)
	if pb.kind == KindRendering {
		path = RenderingPath(a.Name(), pb.ext, pb.part)
	}
	m, err := a.w.writeMember(Member{Path: path, Kind: pb.kind, Artifact: a.Name()}, int64(len(data)), bytes.NewReader(data))
	if err != nil {
		return err
	}
	// Counted per part; a record cut off by the cap counts too, which
	// errs on the side of telling the examiner.
	a.noteRedactions(m, pb.redactions)
	pb.redactions = nil
	if pb.kind == KindRecords {
		a.status().Items += int64(bytes.Count(data, []byte{'\n'}))
	}
	a.link(m)
	pb.buf.Reset()
	return capErr
}

func (a *ArtifactWriter) link(m *Member) {
	st := a.status()
	st.Members = append(st.Members, m.Path)
	st.Bytes += m.Size
	if m.Kind == KindFile || m.Kind == KindMemory {
		st.Files++
	}
	if m.Truncated {
		st.Truncated = true
		if st.TruncatedReason == "" {
			st.TruncatedReason = "one or more copies were cut by a cap: see their members"
		}
	}
	if m.ZeroFilled > 0 {
		a.Skip(m.Source, fmt.Sprintf("%d bytes could not be read and were zero-filled in %s", m.ZeroFilled, m.Path))
	}
}

// Skip records an item that could not be collected and why. Collection of
// the artifact goes on.
func (a *ArtifactWriter) Skip(item, reason string) {
	st := a.status()
	st.SkippedCount++
	if len(st.Skipped) < MaxSkippedListed {
		st.Skipped = append(st.Skipped, SkippedItem{Item: strings.ToValidUTF8(item, "\uFFFD"), Reason: reason})
	}
}

// Truncate records that a cap or the time budget cut the artifact short.
func (a *ArtifactWriter) Truncate(reason string) {
	st := a.status()
	st.Truncated = true
	if st.TruncatedReason == "" || strings.HasPrefix(st.TruncatedReason, "one or more copies") {
		st.TruncatedReason = reason
	}
}

// Fail records that the artifact could not be collected at all.
func (a *ArtifactWriter) Fail(reason string) {
	st := a.status()
	st.Status = StatusError
	st.Reason = reason
}

// Close writes the artifact's pending records (an artifact always has its
// records member, even if empty) and returns its final status.
func (a *ArtifactWriter) Close() (ArtifactStatus, error) {
	if a.closed {
		return *a.status(), nil
	}
	a.closed = true
	for i, o := range a.w.open {
		if o == a {
			a.w.open = append(a.w.open[:i], a.w.open[i+1:]...)
			break
		}
	}
	var err error
	for _, pb := range append([]*partBuffer{a.records}, a.renderings...) {
		if pb.buf.Len() > 0 || pb.part == 0 && pb.kind == KindRecords {
			if ferr := a.flush(pb); ferr != nil && err == nil {
				err = ferr
			}
		}
	}
	st := a.status()
	if st.Status != StatusError && (st.Truncated || st.SkippedCount > 0) {
		st.Status = StatusPartial
		if st.Reason == "" {
			switch {
			case st.Truncated:
				st.Reason = st.TruncatedReason
			default:
				st.Reason = fmt.Sprintf("%d items could not be read", st.SkippedCount)
			}
		}
	}
	if errors.Is(err, ErrCapReached) {
		err = nil
	}
	return *st, err
}

// FileOptions says how much of a file to copy.
type FileOptions struct {
	// MaxBytes caps the copy; 0 means only the bundle's cap applies.
	MaxBytes int64
	// Tail keeps the newest bytes (the end of the file) when the file is
	// over MaxBytes, as for logs; otherwise the head is kept.
	Tail bool
	// Redact passes the copy through the bundle's Redactor, if it has one;
	// the member then records what was replaced.
	Redact bool
}

// AddFile copies an open regular file into
// files/<src>. src is the file's absolute path on the host. The size copied
// is the file's size when it was opened, cut to opt.MaxBytes and to what
// remains under the bundle's cap. A file already in the bundle is linked
// again rather than copied twice.
func (a *ArtifactWriter) AddFile(src string, f *os.File, opt FileOptions) (*Member, error) {
	if err := a.writable(); err != nil {
		return nil, err
	}
	if i, ok := a.w.sources[src]; ok {
		m := &a.w.m.Members[i]
		a.link(m)
		return m, nil
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", src, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", src, fi.Mode().Type())
	}
	size := fi.Size()
	m := Member{Path: FilePath(src), Kind: KindFile, Artifact: a.Name(), Source: validUTF8(src),
		Mode: modeString(fi.Mode()), ModTime: ptrTime(fi.ModTime().UTC()), SourceSize: size}
	n, reason := a.clip(size, opt.MaxBytes)
	// Read by offset, so the copy does not depend on (or move) the file's
	// current offset.
	r := io.NewSectionReader(f, 0, n)
	if n < size {
		m.Truncated, m.TruncatedReason = true, reason
		if opt.Tail {
			m.Offset = size - n
			r = io.NewSectionReader(f, m.Offset, n)
			m.TruncatedReason += fmt.Sprintf("; kept the newest %d bytes from offset %d", n, m.Offset)
		} else {
			m.TruncatedReason += fmt.Sprintf("; kept the first %d bytes", n)
		}
	}
	if n == 0 && size > 0 {
		a.full = true
		a.Truncate(reason)
		return nil, ErrCapReached
	}
	var body io.Reader = r
	var counts func() map[string]int64
	if opt.Redact && a.w.redactor != nil {
		body, counts = a.w.redactor.Reader(r)
	}
	mem, err := a.w.writeMember(m, n, body)
	if err != nil {
		return nil, err
	}
	if counts != nil {
		a.noteRedactions(mem, counts())
	}
	a.link(mem)
	return mem, nil
}

// AddBytes stores b, read from a file that cannot be copied by size (such
// as a /proc or /sys file), as files/<src>.
func (a *ArtifactWriter) AddBytes(src string, b []byte, mode fs.FileMode, modTime time.Time) (*Member, error) {
	if err := a.writable(); err != nil {
		return nil, err
	}
	if i, ok := a.w.sources[src]; ok {
		m := &a.w.m.Members[i]
		a.link(m)
		return m, nil
	}
	m := Member{Path: FilePath(src), Kind: KindFile, Artifact: a.Name(), Source: validUTF8(src),
		Mode: modeString(mode), SourceSize: int64(len(b))}
	if !modTime.IsZero() {
		m.ModTime = ptrTime(modTime.UTC())
	}
	n, reason := a.clip(int64(len(b)), 0)
	if n < int64(len(b)) {
		m.Truncated, m.TruncatedReason = true, reason+fmt.Sprintf("; kept the first %d bytes", n)
		if n == 0 {
			a.full = true
			a.Truncate(reason)
			return nil, ErrCapReached
		}
	}
	mem, err := a.w.writeMember(m, n, bytes.NewReader(b[:n]))
	if err != nil {
		return nil, err
	}
	a.link(mem)
	return mem, nil
}

// PageSize is the granularity at which unreadable process memory is
// zero-filled.
const PageSize = 4096

// AddMemoryRegion copies one region of a process's memory from mem (an open
// /proc/PID/mem) into memory/<pid>/<start>-<end>.bin. Pages that cannot be
// read are written as zeros and counted. maxBytes caps the region (0 means
// only the bundle's cap applies).
func (a *ArtifactWriter) AddMemoryRegion(reg MemoryRegion, mem io.ReaderAt, maxBytes int64) (*Member, error) {
	if err := a.writable(); err != nil {
		return nil, err
	}
	if reg.End <= reg.Start || reg.End-reg.Start > 1<<62 {
		return nil, fmt.Errorf("memory region %x-%x is empty or inverted", reg.Start, reg.End)
	}
	size := int64(reg.End - reg.Start)
	m := Member{Path: MemoryPath(reg.PID, reg.Start, reg.End), Kind: KindMemory, Artifact: a.Name(),
		Source: fmt.Sprintf("/proc/%d/mem", reg.PID), SourceSize: size, Region: &reg}
	n, reason := a.clip(size, maxBytes)
	if n < size {
		m.Truncated, m.TruncatedReason = true, reason+fmt.Sprintf("; kept the first %d bytes", n)
		if n == 0 {
			a.full = true
			a.Truncate(reason)
			return nil, ErrCapReached
		}
	}
	rr := &regionReader{mem: mem, off: int64(reg.Start), end: int64(reg.Start) + n}
	mem2, err := a.w.writeMember(m, n, rr)
	if err != nil {
		return nil, err
	}
	mem2.ZeroFilled += rr.zeroed
	a.link(mem2)
	return mem2, nil
}

// clip returns how many of size bytes may be copied under the per-item cap
// and the bundle's cap, and the reason when that is fewer.
func (a *ArtifactWriter) clip(size, itemCap int64) (int64, string) {
	n, reason := size, ""
	if itemCap > 0 && n > itemCap {
		n, reason = itemCap, fmt.Sprintf("per-file cap of %d bytes", itemCap)
	}
	if rem := a.w.Remaining(); rem >= 0 && n > rem {
		n, reason = rem, fmt.Sprintf("the bundle's byte cap (%d bytes) was reached", a.w.m.Limits.MaxBytes)
	}
	return n, reason
}

// regionReader reads process memory, falling back to page-sized reads when
// a larger read fails, and zero-fills pages that cannot be read at all.
type regionReader struct {
	mem    io.ReaderAt
	off    int64
	end    int64
	zeroed int64
}

func (r *regionReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	p = p[:min(int64(len(p)), r.end-r.off)]
	n, err := r.mem.ReadAt(p, r.off)
	if n > 0 {
		r.off += int64(n)
		return n, nil
	}
	if err == io.EOF {
		return 0, io.EOF
	}
	// The read failed outright: take one page (or up to the next page
	// boundary) and zero it if that page cannot be read either.
	pg := PageSize - r.off%PageSize
	q := p[:min(int64(len(p)), pg)]
	n, _ = r.mem.ReadAt(q, r.off)
	if n == 0 {
		clear(q)
		n = len(q)
		r.zeroed += int64(n)
	}
	r.off += int64(n)
	return n, nil
}

func ptrTime(t time.Time) *time.Time { return &t }

func validUTF8(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// modeString renders a mode as octal permission bits with set-id and sticky
// bits, e.g. "4755".
func modeString(m fs.FileMode) string {
	bits := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		bits |= 0o1000
	}
	return fmt.Sprintf("%04o", bits)
}
