package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// VerifyOptions are the caps a reader applies to an untrusted archive.
type VerifyOptions struct {
	// MaxUncompressedBytes caps the decompressed stream.
	MaxUncompressedBytes int64
	// MaxRatio caps decompressed bytes per compressed byte, once more than
	// RatioFloor bytes have been decompressed.
	MaxRatio   int64
	RatioFloor int64
	// MaxManifestBytes caps the manifest member.
	MaxManifestBytes int64
	// MaxMembers caps the number of members.
	MaxMembers int
}

// DefaultVerifyOptions are the caps Verify and ReadManifest apply. The ratio
// cap is loose enough for zero-filled memory regions under zstd and tight
// enough to stop a bomb long before it fills a disk or memory.
var DefaultVerifyOptions = VerifyOptions{
	MaxUncompressedBytes: 64 << 30,
	MaxRatio:             4096,
	RatioFloor:           64 << 20,
	MaxManifestBytes:     64 << 20,
	MaxMembers:           2_000_000,
}

// Report is what a verification saw.
type Report struct {
	// Compression is the detected compression.
	Compression Compression `json:"compression"`
	// CompressedBytes and CompressedSHA256 describe the stream as read.
	CompressedBytes  int64  `json:"compressed_bytes"`
	CompressedSHA256 string `json:"compressed_sha256"`
	// UncompressedBytes is the size of the decompressed tar stream.
	UncompressedBytes int64 `json:"uncompressed_bytes"`
	// Members counts the archive members, the manifest included.
	Members int `json:"members"`
	// PayloadBytes counts the bytes of all members but the manifest.
	PayloadBytes int64 `json:"payload_bytes"`
	// Verified counts the members whose size and SHA-256 matched the manifest.
	Verified int `json:"verified"`
}

// Verify reads a bundle once, with DefaultVerifyOptions, and checks every
// member against the manifest. See [VerifyOptions.Verify].
func Verify(r io.Reader) (*Manifest, *Report, error) { return DefaultVerifyOptions.Verify(r) }

// ReadManifest reads a bundle once and returns its manifest after the same
// structural checks as Verify (names, member types, duplicates, caps), but
// without comparing digests. Use Verify to establish integrity.
func ReadManifest(r io.Reader) (*Manifest, error) {
	m, _, err := DefaultVerifyOptions.scan(r, false)
	return m, err
}

// Verify reads a bundle once and checks it. It refuses, with an error that
// wraps one of this package's Err values:
//   - a stream that is neither gzip nor zstd, or is corrupt;
//   - a member name that is absolute, holds "..", or is otherwise unsafe;
//   - a member that is not a regular file (links, devices, directories, sparse files);
//   - a name that appears twice;
//   - a missing, malformed, over-sized or not-last manifest;
//   - a member the manifest does not list, or an entry with no member;
//   - a member whose size or SHA-256 differs from the manifest;
//   - a stream that expands past the caps.
//
// The report is returned, as far as the reader got, even with an error.
func (o VerifyOptions) Verify(r io.Reader) (*Manifest, *Report, error) {
	return o.scan(r, true)
}

type observed struct {
	size int64
	sum  string
}

func (o VerifyOptions) scan(r io.Reader, check bool) (*Manifest, *Report, error) {
	rep := &Report{}
	in := &hashingReader{r: r, h: sha256.New()}
	br := bufio.NewReaderSize(in, 64<<10)
	magic, err := br.Peek(4)
	if err != nil {
		return nil, rep, fmt.Errorf("%w: the stream is %d bytes long", ErrUnknownCompression, len(magic))
	}
	var dec io.Reader
	switch {
	case magic[0] == 0x1f && magic[1] == 0x8b:
		rep.Compression = Gzip
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, rep, fmt.Errorf("%w: gzip header: %v", ErrCorrupt, err)
		}
		defer zr.Close()
		dec = zr
	case bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		rep.Compression = Zstd
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20),
			zstd.WithDecoderMaxMemory(256<<20))
		if err != nil {
			return nil, rep, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		defer zr.Close()
		dec = zr
	default:
		return nil, rep, fmt.Errorf("%w: the stream starts % x, neither gzip nor zstd", ErrUnknownCompression, magic)
	}
	guard := &bombGuard{r: dec, in: in, opts: o}
	tr := tar.NewReader(guard)
	var (
		man     *Manifest
		seen    = map[string]observed{}
		order   []string
		copyBuf = make([]byte, copyBufferBytes)
	)
	fail := func(err error) (*Manifest, *Report, error) {
		rep.UncompressedBytes = guard.n
		rep.CompressedBytes = in.n
		if guard.err != nil {
			return nil, rep, guard.err
		}
		return nil, rep, err
	}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(fmt.Errorf("%w: reading the tar stream after %d members: %v", ErrCorrupt, rep.Members, err))
		}
		rep.Members++
		if rep.Members > o.MaxMembers {
			return fail(fmt.Errorf("%w: more than %d members", ErrBomb, o.MaxMembers))
		}
		if man != nil {
			return fail(fmt.Errorf("%w: %q follows it", ErrManifestNotLast, hdr.Name))
		}
		// Security-critical: refuse names that could escape an extraction
		// directory and anything but plain regular files.
		if err := CheckName(hdr.Name); err != nil {
			return fail(err)
		}
		if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeRegA { //nolint:staticcheck // legacy regular-file flag
			return fail(fmt.Errorf("%w: %q has tar type %q", ErrNotRegular, hdr.Name, hdr.Typeflag))
		}
		for k := range hdr.PAXRecords {
			if strings.HasPrefix(k, "GNU.sparse.") {
				return fail(fmt.Errorf("%w: %q is a sparse file", ErrNotRegular, hdr.Name))
			}
		}
		if _, dup := seen[hdr.Name]; dup {
			return fail(fmt.Errorf("%w: %q", ErrDuplicate, hdr.Name))
		}
		if hdr.Name == ManifestName {
			if hdr.Size > o.MaxManifestBytes {
				return fail(fmt.Errorf("%w: %d bytes (limit %d)", ErrManifestTooLarge, hdr.Size, o.MaxManifestBytes))
			}
			b, err := io.ReadAll(io.LimitReader(tr, o.MaxManifestBytes+1))
			if err != nil {
				return fail(fmt.Errorf("%w: reading the manifest: %v", ErrCorrupt, err))
			}
			if man, err = DecodeManifest(b); err != nil {
				return fail(err)
			}
			seen[hdr.Name] = observed{}
			continue
		}
		h := sha256.New()
		var dst io.Writer = h
		if !check {
			dst = io.Discard
		}
		n, err := io.CopyBuffer(dst, onlyReader{tr}, copyBuf)
		if err != nil {
			return fail(fmt.Errorf("%w: reading member %q: %v", ErrCorrupt, hdr.Name, err))
		}
		rep.PayloadBytes += n
		seen[hdr.Name] = observed{size: n, sum: hex.EncodeToString(h.Sum(nil))}
		order = append(order, hdr.Name)
	}
	// Read what is left of the decompressed stream: it must be tar padding,
	// and reading it to the end checks the gzip CRC or zstd checksum.
	rest, err := io.CopyBuffer(zeroChecker{}, onlyReader{guard}, copyBuf)
	if err != nil {
		if errors.Is(err, errNonZero) {
			return fail(fmt.Errorf("%w: data after the end of the tar archive", ErrCorrupt))
		}
		return fail(fmt.Errorf("%w: after the tar archive (%d bytes of padding): %v", ErrCorrupt, rest, err))
	}
	if _, err := io.CopyBuffer(io.Discard, onlyReader{br}, copyBuf); err != nil {
		return fail(fmt.Errorf("%w: reading the end of the stream: %v", ErrCorrupt, err))
	}
	rep.UncompressedBytes = guard.n
	rep.CompressedBytes = in.n
	rep.CompressedSHA256 = hex.EncodeToString(in.h.Sum(nil))
	if man == nil {
		return nil, rep, ErrNoManifest
	}
	listed := make(map[string]bool, len(man.Members))
	for _, m := range man.Members {
		listed[m.Path] = true
	}
	for _, name := range order {
		if !listed[name] {
			return nil, rep, fmt.Errorf("%w: %q", ErrUnlisted, name)
		}
	}
	for _, m := range man.Members {
		got, ok := seen[m.Path]
		if !ok {
			return nil, rep, fmt.Errorf("%w: %q", ErrMissing, m.Path)
		}
		if !check {
			continue
		}
		if got.size != m.Size || got.sum != m.SHA256 {
			return nil, rep, fmt.Errorf("%w: %q is %d bytes with SHA-256 %s; the manifest says %d bytes with %s",
				ErrDigestMismatch, m.Path, got.size, got.sum, m.Size, m.SHA256)
		}
		rep.Verified++
	}
	return man, rep, nil
}

// hashingReader counts and hashes the compressed stream as it is read.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	hr.h.Write(p[:n])
	hr.n += int64(n)
	return n, err
}

// bombGuard stops decompression once the output passes the size cap or the
// ratio cap.
//
// Security-critical: this bounds the work and memory a hostile archive can
// cost the controller.
type bombGuard struct {
	r    io.Reader
	in   *hashingReader
	opts VerifyOptions
	n    int64
	err  error
}

func (g *bombGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	g.n += int64(n)
	switch {
	case g.n > g.opts.MaxUncompressedBytes:
		g.err = fmt.Errorf("%w: more than %d uncompressed bytes", ErrBomb, g.opts.MaxUncompressedBytes)
	case g.n > g.opts.RatioFloor && g.n > g.opts.MaxRatio*max(g.in.n, 1):
		g.err = fmt.Errorf("%w: %d uncompressed bytes from %d compressed (ratio cap %d)", ErrBomb, g.n, g.in.n, g.opts.MaxRatio)
	}
	if g.err != nil {
		return n, g.err
	}
	return n, err
}

var errNonZero = errors.New("non-zero byte")

type zeroChecker struct{}

func (zeroChecker) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != 0 {
			return 0, errNonZero
		}
	}
	return len(p), nil
}
