package awsemu

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

func (e *Emulator) lambdaService() *service {
	s := &service{
		name:        "lambda",
		eventSource: "lambda.amazonaws.com",
		protocol:    protoRestJSON,
		errs:        jsonErrors("TooManyRequestsException", http.StatusTooManyRequests, http.StatusForbidden),
		routes: []restRoute{
			route(http.MethodGet, "/2015-03-31/functions", "ListFunctions"),
			route(http.MethodGet, "/2015-03-31/functions/{FunctionName}", "GetFunction"),
			route(http.MethodPost, "/2015-03-31/functions", "CreateFunction"),
			route(http.MethodDelete, "/2015-03-31/functions/{FunctionName}", "DeleteFunction"),
			route(http.MethodGet, "/2019-09-30/functions/{FunctionName}/concurrency", "GetFunctionConcurrency"),
			route(http.MethodPut, "/2017-10-31/functions/{FunctionName}/concurrency", "PutFunctionConcurrency"),
			route(http.MethodDelete, "/2017-10-31/functions/{FunctionName}/concurrency", "DeleteFunctionConcurrency"),
		},
	}
	s.errs.unknownOperation = errorf(http.StatusNotFound, "UnknownOperationException", "Unknown operation")
	functionARN := func(e *Emulator, c *call) []string {
		name, _, _ := splitFunctionRef(c.path["FunctionName"])
		return []string{"arn:aws:lambda:" + c.region + ":" + c.who.account + ":function:" + name}
	}
	ops := []*operation{
		{name: "ListFunctions", readOnly: true, handle: (*Emulator).lambdaListFunctions},
		{name: "GetFunction", readOnly: true, handle: (*Emulator).lambdaGetFunction, resources: functionARN},
		{name: "GetFunctionConcurrency", readOnly: true, handle: (*Emulator).lambdaGetConcurrency, resources: functionARN},
		{name: "PutFunctionConcurrency", handle: (*Emulator).lambdaPutConcurrency, resources: functionARN},
		{name: "DeleteFunctionConcurrency", handle: (*Emulator).lambdaDeleteConcurrency, resources: functionARN},
		{name: "CreateFunction", eventName: "CreateFunction20150331", handle: (*Emulator).lambdaCreateFunction,
			resources: func(e *Emulator, c *call) []string {
				var in struct {
					FunctionName string `json:"FunctionName"`
				}
				_ = json.Unmarshal(c.body, &in)
				return []string{"arn:aws:lambda:" + c.region + ":" + c.who.account + ":function:" + in.FunctionName}
			}},
		{name: "DeleteFunction", eventName: "DeleteFunction20150331", handle: (*Emulator).lambdaDeleteFunction, resources: functionARN},
	}
	s.ops = make(map[string]*operation, len(ops))
	for _, op := range ops {
		op.action = "lambda:" + op.name
		s.ops[op.name] = op
	}
	return s
}

// splitFunctionRef reads a function name, partial ARN (ACCOUNT:function:NAME)
// or full ARN into the name and, when given, the account and region.
func splitFunctionRef(ref string) (name, account, region string) {
	if rest, ok := strings.CutPrefix(ref, "arn:aws:lambda:"); ok {
		parts := strings.Split(rest, ":")
		if len(parts) >= 4 && parts[2] == "function" {
			return parts[3], parts[1], parts[0]
		}
		return ref, "", ""
	}
	parts := strings.Split(ref, ":")
	if len(parts) >= 3 && parts[1] == "function" {
		return parts[2], parts[0], ""
	}
	if len(parts) == 2 {
		return parts[0], "", ""
	}
	return ref, "", ""
}

// functionFor finds the call's function. The caller holds the account lock.
func (c *call) functionFor() (*region, *lambdaFunction, *apiError) {
	ref := c.path["FunctionName"]
	name, account, region := splitFunctionRef(ref)
	rg := c.acct.region(c.region)
	f := rg.functions[name]
	if f == nil || (account != "" && account != c.who.account) || (region != "" && region != c.region) {
		return nil, nil, errorf(http.StatusNotFound, "ResourceNotFoundException", "Function not found: arn:aws:lambda:%s:%s:function:%s", c.region, orDefault(account, c.who.account), name)
	}
	return rg, f, nil
}

func lambdaInvalid(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "InvalidParameterValueException", format, args...)
}

type lambdaConfiguration struct {
	FunctionName     string            `json:"FunctionName"`
	FunctionArn      string            `json:"FunctionArn"`
	Runtime          string            `json:"Runtime"`
	Role             string            `json:"Role"`
	Handler          string            `json:"Handler"`
	CodeSize         int64             `json:"CodeSize"`
	Description      string            `json:"Description"`
	Timeout          int32             `json:"Timeout"`
	MemorySize       int32             `json:"MemorySize"`
	LastModified     string            `json:"LastModified"`
	CodeSha256       string            `json:"CodeSha256"`
	Version          string            `json:"Version"`
	TracingConfig    map[string]string `json:"TracingConfig"`
	RevisionID       string            `json:"RevisionId"`
	State            string            `json:"State"`
	LastUpdateStatus string            `json:"LastUpdateStatus"`
	PackageType      string            `json:"PackageType"`
	Architectures    []string          `json:"Architectures"`
	EphemeralStorage map[string]int    `json:"EphemeralStorage"`
	LoggingConfig    map[string]string `json:"LoggingConfig"`
}

func renderFunction(f *lambdaFunction) lambdaConfiguration {
	return lambdaConfiguration{
		FunctionName: f.name, FunctionArn: f.arn, Runtime: f.runtime, Role: f.role, Handler: f.handler, CodeSize: f.codeSize,
		Description: f.description, Timeout: f.timeout, MemorySize: f.memory,
		LastModified: f.lastModified.UTC().Format("2006-01-02T15:04:05.000-0700"), CodeSha256: f.codeSHA256, Version: "$LATEST",
		TracingConfig: map[string]string{"Mode": "PassThrough"}, RevisionID: f.revisionID, State: "Active", LastUpdateStatus: "Successful",
		PackageType: "Zip", Architectures: []string{f.architecture}, EphemeralStorage: map[string]int{"Size": 512},
		LoggingConfig: map[string]string{"LogFormat": "Text", "LogGroup": "/aws/lambda/" + f.name},
	}
}

func (e *Emulator) lambdaListFunctions(c *call) (any, error) {
	q := c.r.URL.Query()
	limit := 50
	if v := q.Get("MaxItems"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 50 {
			return nil, lambdaInvalid("MaxItems must be between 1 and 50")
		}
		limit = n
	}
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg := c.acct.region(c.region)
	names := make([]string, 0, len(rg.functions))
	for n := range rg.functions {
		names = append(names, n)
	}
	slices.Sort(names)
	page, next, ae := jsonPage(names, q.Get("Marker"), limit, 50, func(string) *apiError { return lambdaInvalid("Invalid Marker") })
	if ae != nil {
		return nil, ae
	}
	out := make([]lambdaConfiguration, 0, len(page))
	for _, n := range page {
		out = append(out, renderFunction(rg.functions[n]))
	}
	return map[string]any{"Functions": out, "NextMarker": nilIfEmpty(next)}, nil
}

func (e *Emulator) lambdaGetFunction(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	_, f, ae := c.functionFor()
	if ae != nil {
		return nil, ae
	}
	out := map[string]any{
		"Configuration": renderFunction(f),
		"Code": map[string]string{"RepositoryType": "S3",
			"Location": "https://awslambda-" + c.region + "-tasks.s3." + c.region + ".amazonaws.com/snapshots/" + c.who.account + "/" + f.name + "-" + f.revisionID},
		"Tags": f.tags.clone(),
	}
	if f.reserved != nil {
		out["Concurrency"] = map[string]int32{"ReservedConcurrentExecutions": *f.reserved}
	}
	return out, nil
}

func (e *Emulator) lambdaGetConcurrency(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	_, f, ae := c.functionFor()
	if ae != nil {
		return nil, ae
	}
	if f.reserved == nil {
		return map[string]any{}, nil
	}
	return map[string]int32{"ReservedConcurrentExecutions": *f.reserved}, nil
}

// minUnreservedConcurrency is what Lambda keeps free for functions without
// a reservation.
const minUnreservedConcurrency = 100

func (e *Emulator) lambdaPutConcurrency(c *call) (any, error) {
	var in struct {
		ReservedConcurrentExecutions *int32 `json:"ReservedConcurrentExecutions"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	if in.ReservedConcurrentExecutions == nil || *in.ReservedConcurrentExecutions < 0 {
		return nil, lambdaInvalid("ReservedConcurrentExecutions must be a non-negative integer")
	}
	n := *in.ReservedConcurrentExecutions
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg, f, ae := c.functionFor()
	if ae != nil {
		return nil, ae
	}
	reserved := n
	for _, other := range rg.functions {
		if other != f && other.reserved != nil {
			reserved += *other.reserved
		}
	}
	if c.acct.lambdaConcurrencyLimit-reserved < minUnreservedConcurrency {
		return nil, lambdaInvalid("Specified ReservedConcurrentExecutions for function decreases account's UnreservedConcurrentExecution below its minimum value of [%d].", minUnreservedConcurrency)
	}
	f.reserved = &n
	return map[string]int32{"ReservedConcurrentExecutions": n}, nil
}

func (e *Emulator) lambdaDeleteConcurrency(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	_, f, ae := c.functionFor()
	if ae != nil {
		return nil, ae
	}
	f.reserved = nil
	return &rawResponse{status: http.StatusNoContent}, nil
}
