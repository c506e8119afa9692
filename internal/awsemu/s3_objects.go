package awsemu

import (
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// s3Object is one stored object. The emulator keeps objects only for what
// it writes itself (the organisation trail's log files); there is no
// PutObject.
type s3Object struct {
	data            []byte
	etag            string
	modified        time.Time
	contentType     string
	contentEncoding string
}

// objectStore holds a bucket's objects under a lock of its own, so the
// trail can deliver log files without taking the owner's account lock.
type objectStore struct {
	mu      sync.RWMutex
	objects map[string]*s3Object
}

func (b *bucket) store() *objectStore {
	b.objectsOnce.Do(func() { b.objects = &objectStore{objects: map[string]*s3Object{}} })
	return b.objects
}

// put stores an object, replacing any of the same key.
func (s *objectStore) put(key string, o *s3Object) {
	sum := md5.Sum(o.data)
	o.etag = `"` + hex.EncodeToString(sum[:]) + `"`
	s.mu.Lock()
	s.objects[key] = o
	s.mu.Unlock()
}

func objectARN(e *Emulator, c *call) []string {
	return []string{"arn:aws:s3:::" + c.path["Bucket"] + "/" + c.path["Key"]}
}

func noSuchKey(key string) *apiError {
	return &apiError{Code: "NoSuchKey", Status: http.StatusNotFound, Message: "The specified key does not exist.", Fields: map[string]string{"Key": key}}
}

// s3GetObject answers GetObject and HeadObject.
func (e *Emulator) s3GetObject(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	c.acct.mu.Unlock()
	key := c.path["Key"]
	st := b.store()
	st.mu.RLock()
	o := st.objects[key]
	st.mu.RUnlock()
	if o == nil {
		if c.r.Method == http.MethodHead {
			return &rawResponse{status: http.StatusNotFound}, nil
		}
		return nil, noSuchKey(key)
	}
	h := http.Header{}
	h.Set("ETag", o.etag)
	h.Set("Last-Modified", o.modified.UTC().Format(http.TimeFormat))
	h.Set("Content-Length", strconv.Itoa(len(o.data)))
	if o.contentEncoding != "" {
		h.Set("Content-Encoding", o.contentEncoding)
	}
	body := o.data
	if c.r.Method == http.MethodHead {
		body = nil
	}
	return &rawResponse{contentType: o.contentType, header: h, body: body}, nil
}

type s3ListedObject struct {
	Key          string `xml:"Key"`
	LastModified string `xml:"LastModified"`
	ETag         string `xml:"ETag"`
	Size         int    `xml:"Size"`
	StorageClass string `xml:"StorageClass"`
}

type s3CommonPrefix struct {
	Prefix string `xml:"Prefix"`
}

// s3ListObjectsV2 lists keys in order, with prefix, delimiter, start-after
// and continuation, as S3 does.
func (e *Emulator) s3ListObjectsV2(c *call) (any, error) {
	b, ae := e.bucketFor(c, false)
	if ae != nil {
		return nil, ae
	}
	name := b.name
	c.acct.mu.Unlock()
	q := c.r.URL.Query()
	prefix, delim, startAfter := q.Get("prefix"), q.Get("delimiter"), q.Get("start-after")
	maxKeys := 1000
	if v := q.Get("max-keys"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, errorf(http.StatusBadRequest, "InvalidArgument", "max-keys must be a non-negative integer")
		}
		maxKeys = min(n, 1000)
	}
	after := startAfter
	if tok := q.Get("continuation-token"); tok != "" {
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !strings.HasPrefix(string(raw), "after:") {
			return nil, errorf(http.StatusBadRequest, "InvalidArgument", "The continuation token provided is incorrect")
		}
		after = strings.TrimPrefix(string(raw), "after:")
	}
	st := b.store()
	st.mu.RLock()
	keys := make([]string, 0, len(st.objects))
	for k := range st.objects {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	out := &struct {
		XMLName               xml.Name         `xml:"ListBucketResult"`
		Xmlns                 string           `xml:"xmlns,attr"`
		Name                  string           `xml:"Name"`
		Prefix                string           `xml:"Prefix"`
		Delimiter             string           `xml:"Delimiter,omitempty"`
		StartAfter            string           `xml:"StartAfter,omitempty"`
		ContinuationToken     string           `xml:"ContinuationToken,omitempty"`
		NextContinuationToken string           `xml:"NextContinuationToken,omitempty"`
		KeyCount              int              `xml:"KeyCount"`
		MaxKeys               int              `xml:"MaxKeys"`
		IsTruncated           bool             `xml:"IsTruncated"`
		Contents              []s3ListedObject `xml:"Contents"`
		CommonPrefixes        []s3CommonPrefix `xml:"CommonPrefixes"`
	}{Xmlns: s3Namespace, Name: name, Prefix: prefix, Delimiter: delim, StartAfter: startAfter,
		ContinuationToken: q.Get("continuation-token"), MaxKeys: maxKeys}
	last := ""
	for _, k := range keys {
		if out.KeyCount == maxKeys {
			out.IsTruncated = true
			break
		}
		if delim != "" {
			if i := strings.Index(k[len(prefix):], delim); i >= 0 {
				cp := k[:len(prefix)+i+len(delim)]
				if strings.HasPrefix(last, cp) {
					continue
				}
				out.CommonPrefixes = append(out.CommonPrefixes, s3CommonPrefix{cp})
				out.KeyCount++
				// The next page resumes after every key under this prefix.
				last = cp + "\uffff"
				continue
			}
		}
		o := st.objects[k]
		out.Contents = append(out.Contents, s3ListedObject{k, xmlTime(o.modified), o.etag, len(o.data), "STANDARD"})
		out.KeyCount++
		last = k
	}
	st.mu.RUnlock()
	if out.IsTruncated {
		out.NextContinuationToken = base64.RawURLEncoding.EncodeToString([]byte("after:" + last))
	}
	return out, nil
}
