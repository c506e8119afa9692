package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// Errors a reader returns, each wrapped with the details of what it found.
// Compare with errors.Is.
var (
	// ErrUnsafePath is a member name that could escape an extraction
	// directory or that the format does not produce.
	ErrUnsafePath = errors.New("unsafe member name")
	// ErrNotRegular is a member that is not a regular file (a link, device,
	// directory, FIFO or sparse file).
	ErrNotRegular = errors.New("member is not a regular file")
	// ErrDuplicate is a member name that appears twice.
	ErrDuplicate = errors.New("duplicate member")
	// ErrUnlisted is a member the manifest does not list.
	ErrUnlisted = errors.New("member missing from the manifest")
	// ErrMissing is a manifest entry with no member in the archive.
	ErrMissing = errors.New("manifest entry missing from the archive")
	// ErrDigestMismatch is a member whose size or SHA-256 differs from the manifest.
	ErrDigestMismatch = errors.New("member does not match the manifest")
	// ErrNoManifest is an archive without a manifest.
	ErrNoManifest = errors.New("archive has no manifest")
	// ErrManifestNotLast is a member after the manifest.
	ErrManifestNotLast = errors.New("manifest is not the last member")
	// ErrManifestTooLarge is a manifest over the reader's cap.
	ErrManifestTooLarge = errors.New("manifest too large")
	// ErrMalformedManifest is a manifest that is not valid JSON of this schema.
	ErrMalformedManifest = errors.New("malformed manifest")
	// ErrBomb is an archive whose uncompressed size or compression ratio is
	// over the reader's caps.
	ErrBomb = errors.New("archive expands beyond the reader's caps")
	// ErrUnknownCompression is a stream that is neither gzip nor zstd.
	ErrUnknownCompression = errors.New("unknown compression")
	// ErrCorrupt is a stream that cannot be decompressed or is not a tar archive.
	ErrCorrupt = errors.New("corrupt archive")
	// ErrCapReached is returned by the Writer once the total byte cap is spent.
	ErrCapReached = errors.New("the bundle's byte cap is reached")
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
