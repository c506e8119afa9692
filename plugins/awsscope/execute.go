package awsscope

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	cttypes "github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"

	"github.com/firebreak-ir/firebreak/internal/trailscope"
	"github.com/firebreak-ir/firebreak/plugins/awsclient"
	"github.com/firebreak-ir/firebreak/plugins/awsresponse"
	"github.com/firebreak-ir/firebreak/plugins/sdk"
)

// Result is aws-credential-scope's result.
type Result struct {
	// Account is the account the task ran in.
	Account string `json:"account"`
	// Source is lookup or trail.
	Source string    `json:"source"`
	Key    string    `json:"access_key_id"`
	Start  time.Time `json:"start"`
	End    time.Time `json:"end"`
	// Read says how much was read.
	Read ReadStats `json:"read"`
	// Scope is what the key and its sessions did.
	Scope *trailscope.Scope `json:"scope"`
	// NextKeys are sessions of the chain that act in accounts this task
	// could not read (lookup source): scope them there.
	NextKeys []NextKey `json:"next_keys"`
	// Artifact describes the evidence artifact of matched events.
	Artifact ArtifactInfo `json:"artifact"`
	// APICalls counts the AWS calls made, by operation.
	APICalls map[string]int `json:"api_calls"`
	// Errors lists what could not be read; the rest was.
	Errors []string `json:"errors,omitempty"`
}

// ReadStats is how much a task read.
type ReadStats struct {
	// Files and Bytes are the log files read and their size as stored
	// (gzip); Pages are LookupEvents pages.
	Files int   `json:"files"`
	Bytes int64 `json:"bytes"`
	Pages int   `json:"pages"`
	// Records are the records in the window.
	Records int `json:"records"`
	// Regions and Accounts are what was read.
	Regions  []string `json:"regions"`
	Accounts []string `json:"accounts,omitempty"`
	// Elapsed is the reading's wall time.
	ElapsedMS int64 `json:"elapsed_ms"`
}

// NextKey is a session to scope in another account.
type NextKey struct {
	AccessKeyID string `json:"access_key_id"`
	Account     string `json:"account"`
	Parent      string `json:"parent"`
}

// ArtifactInfo describes the events artifact.
type ArtifactInfo struct {
	Name      string `json:"name"`
	MediaType string `json:"media_type"`
	Events    int    `json:"events"`
	Bytes     int64  `json:"bytes"`
	SHA256    string `json:"sha256"`
}

// Execute implements sdk.Action.
func (a *Action) Execute(ctx context.Context, req *sdk.Request, emit sdk.Emitter) (any, error) {
	var p Params
	if err := req.Decode(&p); err != nil {
		return nil, err
	}
	account, region, err := p.Target.Check(req.AWS)
	if err != nil {
		return nil, err
	}
	q, err := p.check(a.cfg.Clock(), region)
	if err != nil {
		return nil, err
	}
	journal := &awsresponse.Journal{}
	cfg, err := awsresponse.Config(req.AWS, journal)
	if err != nil {
		return nil, err
	}
	res := &Result{Account: account, Source: q.source, Key: q.key, Start: q.start, End: q.end, NextKeys: []NextKey{}}
	col := &trailscope.Collector{Start: q.start, End: q.end}
	cl := &trailscope.Classifier{OrgAccounts: q.orgAccounts}
	began := time.Now()
	var readErr error
	if q.source == SourceTrail {
		readErr = a.readTrail(ctx, a.cfg.Clients.S3(cfg, req.AWS, region), q, col, res, emit)
	} else {
		readErr = a.readLookup(ctx, func(r string) CloudTrail { return a.cfg.Clients.CloudTrail(cfg, req.AWS, r) }, q, account, col, cl, res, emit)
	}
	res.Read.ElapsedMS = time.Since(began).Milliseconds()
	res.Read.Records = col.Records()
	res.Scope = col.Scope(q.key, cl)
	if q.source == SourceLookup {
		for _, c := range res.Scope.Chain.Credentials {
			if c.Parent != "" && c.Account != "" && c.Account != account {
				res.NextKeys = append(res.NextKeys, NextKey{AccessKeyID: c.AccessKeyID, Account: c.Account, Parent: c.Parent})
			}
		}
	}
	res.APICalls = map[string]int{}
	for _, c := range journal.Calls() {
		res.APICalls[c.Operation] += c.Attempts
	}
	if err := writeArtifact(emit, res); err != nil {
		return res, sdk.Errorf(codes.Unavailable, "sending the events artifact: %v", err)
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	if readErr != nil {
		return res, readErr
	}
	_ = emit.Progress(100, fmt.Sprintf("%d events of %s and %d session(s) in %d account(s)", len(res.Scope.Events), q.key,
		len(res.Scope.Chain.Credentials)-1, len(res.Scope.Accounts())))
	return res, nil
}

// writeArtifact sends the matched records, one per line, as CloudTrail
// wrote them.
func writeArtifact(emit sdk.Emitter, res *Result) error {
	res.Artifact = ArtifactInfo{Name: "credential-scope-" + res.Key + "-" + res.Account + ".ndjson", MediaType: "application/x-ndjson"}
	h := sha256.New()
	w := emit.Artifact(res.Artifact.Name, res.Artifact.MediaType)
	var buf bytes.Buffer
	for _, ev := range res.Scope.Events {
		buf.Reset()
		if err := json.Compact(&buf, ev.Record.Raw); err != nil {
			buf.Write(ev.Record.Raw)
		}
		buf.WriteByte('\n')
		h.Write(buf.Bytes())
		n, err := w.Write(buf.Bytes())
		res.Artifact.Bytes += int64(n)
		if err != nil {
			w.Close()
			return err
		}
		res.Artifact.Events++
	}
	res.Artifact.SHA256 = hex.EncodeToString(h.Sum(nil))
	return w.Close()
}

// readLookup looks every key of the chain that acts in this account up in
// each region, at LookupRequestsPerSecond per region, until no new key of
// this account appears.
func (a *Action) readLookup(ctx context.Context, client func(string) CloudTrail, q *query, account string, col *trailscope.Collector,
	cl *trailscope.Classifier, res *Result, emit sdk.Emitter) error {
	res.Read.Regions = q.regions
	res.Read.Accounts = []string{account}
	limiters := map[string]*rate.Limiter{}
	clients := map[string]CloudTrail{}
	for _, r := range q.regions {
		limiters[r] = rate.NewLimiter(rate.Limit(LookupRequestsPerSecond), 1)
		clients[r] = client(r)
	}
	looked := map[string]bool{}
	frontier := []string{q.key}
	var mu sync.Mutex
	var failed []string
	for len(frontier) > 0 {
		g, gctx := errgroup.WithContext(ctx)
		for _, r := range q.regions {
			g.Go(func() error {
				for _, key := range frontier {
					pages, err := a.lookupKey(gctx, clients[r], limiters[r], key, q, col)
					mu.Lock()
					res.Read.Pages += pages
					if err != nil {
						failed = append(failed, r+": "+err.Error())
					}
					mu.Unlock()
					if err != nil {
						return nil
					}
				}
				return nil
			})
		}
		_ = g.Wait()
		for _, k := range frontier {
			looked[k] = true
		}
		frontier = nil
		for _, c := range col.Scope(q.key, cl).Chain.Credentials {
			if !looked[c.AccessKeyID] && c.Account == account {
				frontier = append(frontier, c.AccessKeyID)
			}
		}
		_ = emit.Progress(-1, fmt.Sprintf("%d key(s) looked up, %d pages", len(looked), res.Read.Pages))
	}
	// The trust policy a role had before the chain changed it was set by
	// someone else, often long before the window: look its CreateRole and
	// UpdateAssumeRolePolicy events up by name, as far back as
	// LookupEvents keeps them, in the region IAM logs them in.
	trustRegions := map[string]bool{}
	for _, a := range col.Scope(q.key, cl).Artifacts {
		if a.Kind == trailscope.KindRoleTrust && a.Account == account && limiters[a.Region] != nil {
			trustRegions[a.Region] = true
		}
	}
	for _, r := range sortedKeys(trustRegions) {
		for _, name := range []string{"CreateRole", "UpdateAssumeRolePolicy"} {
			pages, err := a.lookup(ctx, clients[r], limiters[r], cttypes.LookupAttributeKeyEventName, name, q.end.Add(-LookupRetention), q.end, col)
			res.Read.Pages += pages
			if err != nil {
				failed = append(failed, r+": "+err.Error())
			}
		}
	}
	if len(failed) > 0 {
		res.Errors = failed
		return sdk.Errorf(codes.Unavailable, "CloudTrail could not be read in every region (%s); what was read is in the result", strings.Join(failed, "; "))
	}
	return nil
}

// LookupRetention is how far back LookupEvents answers.
const LookupRetention = 90 * 24 * time.Hour

func (a *Action) lookupKey(ctx context.Context, c CloudTrail, lim *rate.Limiter, key string, q *query, col *trailscope.Collector) (int, error) {
	return a.lookup(ctx, c, lim, cttypes.LookupAttributeKeyAccessKeyId, key, q.start, q.end, col)
}

// lookup pages through LookupEvents for one attribute, within the region's
// rate, into the collector.
func (a *Action) lookup(ctx context.Context, c CloudTrail, lim *rate.Limiter, attr cttypes.LookupAttributeKey, value string,
	start, end time.Time, col *trailscope.Collector) (int, error) {
	in := &cloudtrail.LookupEventsInput{
		LookupAttributes: []cttypes.LookupAttribute{{AttributeKey: attr, AttributeValue: aws.String(value)}},
		StartTime:        aws.Time(start), EndTime: aws.Time(end), MaxResults: aws.Int32(50),
	}
	pages := 0
	for {
		r := lim.ReserveN(a.cfg.Clock(), 1)
		if err := a.cfg.Sleep(ctx, r.DelayFrom(a.cfg.Clock())); err != nil {
			return pages, err
		}
		out, err := c.LookupEvents(ctx, in)
		if err != nil {
			return pages, awsclient.APIError("cloudtrail:LookupEvents", err)
		}
		pages++
		for _, ev := range out.Events {
			rec, err := trailscope.ParseRecord([]byte(aws.ToString(ev.CloudTrailEvent)))
			if err != nil {
				return pages, fmt.Errorf("CloudTrail returned event %s with a record that is not a CloudTrail event: %w", aws.ToString(ev.EventId), err)
			}
			col.Add(rec)
		}
		if aws.ToString(out.NextToken) == "" {
			return pages, nil
		}
		in.NextToken = out.NextToken
	}
}

// readTrail lists the trail's log files for the window, every account
// and region, and reads them Readers at a time.
func (a *Action) readTrail(ctx context.Context, c S3, q *query, col *trailscope.Collector, res *Result, emit sdk.Emitter) error {
	root := "AWSLogs/"
	if q.prefix != "" {
		root = q.prefix + "/AWSLogs/"
	}
	if q.orgID == "" {
		orgs, err := listPrefixes(ctx, c, q.bucket, root)
		if err != nil {
			return err
		}
		var ids []string
		for _, o := range orgs {
			if id := strings.TrimSuffix(strings.TrimPrefix(o, root), "/"); orgIDRE.MatchString(id) {
				ids = append(ids, id)
			}
		}
		if len(ids) != 1 {
			return sdk.Errorf(codes.FailedPrecondition, "s3://%s/%s holds %d organisation trails' logs (%v): give org_id", q.bucket, root, len(ids), ids)
		}
		q.orgID = ids[0]
	}
	orgRoot := root + q.orgID + "/"
	accounts := q.accounts
	if len(accounts) == 0 {
		ps, err := listPrefixes(ctx, c, q.bucket, orgRoot)
		if err != nil {
			return err
		}
		for _, p := range ps {
			if a := strings.TrimSuffix(strings.TrimPrefix(p, orgRoot), "/"); accountRE.MatchString(a) {
				accounts = append(accounts, a)
			}
		}
	}
	res.Read.Accounts = accounts

	// Every account's regions, then every day's listing, in parallel.
	var (
		mu       sync.Mutex
		prefixes []string
		regions  = map[string]bool{}
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.cfg.Readers)
	for _, acct := range accounts {
		g.Go(func() error {
			base := orgRoot + acct + "/CloudTrail/"
			rs := q.regions
			if len(rs) == 0 {
				ps, err := listPrefixes(gctx, c, q.bucket, base)
				if err != nil {
					return err
				}
				for _, p := range ps {
					if r := strings.TrimSuffix(strings.TrimPrefix(p, base), "/"); awsresponse.ValidRegion(r) {
						rs = append(rs, r)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for _, r := range rs {
				regions[r] = true
				// A file holds events from before its delivery, so the day
				// after the window may hold the window's last events.
				for d := q.start.Truncate(24 * time.Hour); !d.After(q.end.Add(24 * time.Hour)); d = d.Add(24 * time.Hour) {
					prefixes = append(prefixes, base+r+"/"+d.Format("2006/01/02")+"/")
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	res.Read.Regions = sortedKeys(regions)

	var keys []string
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(a.cfg.Readers)
	for _, p := range prefixes {
		g.Go(func() error {
			ks, err := listKeys(gctx, c, q.bucket, p)
			mu.Lock()
			keys = append(keys, ks...)
			mu.Unlock()
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	_ = emit.Progress(-1, fmt.Sprintf("%d log files in %d account(s)", len(keys), len(accounts)))

	var files, read atomic.Int64
	var failed []string
	g, gctx = errgroup.WithContext(ctx)
	g.SetLimit(a.cfg.Readers)
	for _, k := range keys {
		g.Go(func() error {
			n, err := readLogFile(gctx, c, q.bucket, k, col)
			read.Add(n)
			if err != nil {
				mu.Lock()
				failed = append(failed, k+": "+err.Error())
				mu.Unlock()
				return nil
			}
			if files.Add(1)%500 == 0 {
				_ = emit.Progress(-1, fmt.Sprintf("%d of %d log files read", files.Load(), len(keys)))
			}
			return nil
		})
	}
	_ = g.Wait()
	res.Read.Files, res.Read.Bytes = int(files.Load()), read.Load()
	if len(failed) > 0 {
		slices.Sort(failed)
		res.Errors = failed
		return sdk.Errorf(codes.Unavailable, "%d of %d log files could not be read (first: %s); the rest were", len(failed), len(keys), failed[0])
	}
	return ctx.Err()
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// listPrefixes lists the "directories" directly under prefix.
func listPrefixes(ctx context.Context, c S3, bucket, prefix string) ([]string, error) {
	var out []string
	pages := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix), Delimiter: aws.String("/")})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, awsclient.APIError("s3:ListObjectsV2 s3://"+bucket+"/"+prefix, err)
		}
		for _, cp := range page.CommonPrefixes {
			out = append(out, aws.ToString(cp.Prefix))
		}
	}
	return out, nil
}

// listKeys lists the log files under prefix.
func listKeys(ctx context.Context, c S3, bucket, prefix string) ([]string, error) {
	var out []string
	pages := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String(prefix)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, awsclient.APIError("s3:ListObjectsV2 s3://"+bucket+"/"+prefix, err)
		}
		for _, o := range page.Contents {
			if k := aws.ToString(o.Key); strings.HasSuffix(k, ".json.gz") {
				out = append(out, k)
			}
		}
	}
	return out, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// readLogFile reads one log file into the collector and returns the bytes
// read.
func readLogFile(ctx context.Context, c S3, bucket, key string, col *trailscope.Collector) (int64, error) {
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return 0, awsclient.APIError("s3:GetObject", err)
	}
	defer out.Body.Close()
	cr := &countingReader{r: out.Body}
	recs, err := trailscope.ParseLogFile(cr)
	if err != nil {
		return cr.n, err
	}
	for _, r := range recs {
		col.Add(r)
	}
	return cr.n, nil
}
