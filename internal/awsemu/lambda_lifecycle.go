package awsemu

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
)

// lambdaFunctionName is Lambda's rule for a function's name.
var lambdaFunctionName = regexp.MustCompile(`^[a-zA-Z0-9-_]{1,64}$`)

// lambdaCreateFunction creates a function from an inline zip or an S3
// location. The emulator keeps the code's size and digest, never runs it.
func (e *Emulator) lambdaCreateFunction(c *call) (any, error) {
	var in struct {
		FunctionName  string            `json:"FunctionName"`
		Runtime       string            `json:"Runtime"`
		Role          string            `json:"Role"`
		Handler       string            `json:"Handler"`
		Description   string            `json:"Description"`
		Timeout       int32             `json:"Timeout"`
		MemorySize    int32             `json:"MemorySize"`
		Architectures []string          `json:"Architectures"`
		Tags          map[string]string `json:"Tags"`
		Code          struct {
			ZipFile  string `json:"ZipFile"`
			S3Bucket string `json:"S3Bucket"`
			S3Key    string `json:"S3Key"`
		} `json:"Code"`
	}
	if ae := c.decodeJSON(&in); ae != nil {
		return nil, ae
	}
	if !lambdaFunctionName.MatchString(in.FunctionName) {
		return nil, lambdaInvalid("1 validation error detected: Value '%s' at 'functionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+", in.FunctionName)
	}
	if !strings.HasPrefix(in.Role, "arn:aws:iam::") {
		return nil, lambdaInvalid("1 validation error detected: Value '%s' at 'role' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:(aws[a-zA-Z-]*)?:iam::\\d{12}:role/?[a-zA-Z_0-9+=,.@\\-_/]+", in.Role)
	}
	var code []byte
	switch {
	case in.Code.ZipFile != "":
		b, err := base64.StdEncoding.DecodeString(in.Code.ZipFile)
		if err != nil {
			return nil, lambdaInvalid("Could not unzip uploaded file. Please check your file, then try to upload again.")
		}
		code = b
	case in.Code.S3Bucket != "" && in.Code.S3Key != "":
		code = []byte("s3://" + in.Code.S3Bucket + "/" + in.Code.S3Key)
	default:
		return nil, lambdaInvalid("Please provide a source for function code.")
	}
	arch := "x86_64"
	if len(in.Architectures) == 1 {
		arch = in.Architectures[0]
	}
	sum := sha256.Sum256(code)
	f := &lambdaFunction{name: in.FunctionName, arn: "arn:aws:lambda:" + c.region + ":" + c.who.account + ":function:" + in.FunctionName,
		runtime: orDefault(in.Runtime, "python3.12"), handler: orDefault(in.Handler, "index.handler"), role: in.Role,
		description: in.Description, memory: in.MemorySize, timeout: in.Timeout, lastModified: c.now, tags: tags(in.Tags).clone(),
		architecture: arch, codeSize: int64(len(code)), codeSHA256: base64.StdEncoding.EncodeToString(sum[:]), revisionID: e.ids.uuid("revision")}
	if f.memory == 0 {
		f.memory = 128
	}
	if f.timeout == 0 {
		f.timeout = 3
	}
	c.acct.mu.Lock()
	rg := c.acct.region(c.region)
	if rg.functions[f.name] != nil {
		c.acct.mu.Unlock()
		return nil, errorf(http.StatusConflict, "ResourceConflictException", "Function already exist: %s", f.name)
	}
	rg.functions[f.name] = f
	c.acct.mu.Unlock()
	out := renderFunction(f)
	// CloudTrail records the configuration Lambda answered with, in lower
	// camel case like the request.
	if doc, err := json.Marshal(out); err == nil {
		var resp map[string]any
		if json.Unmarshal(doc, &resp) == nil {
			c.trail.response = lowerKeys(resp)
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	return &rawResponse{status: http.StatusCreated, contentType: "application/json", body: body}, nil
}

// lambdaDeleteFunction deletes a function and its reservation.
func (e *Emulator) lambdaDeleteFunction(c *call) (any, error) {
	c.acct.mu.Lock()
	defer c.acct.mu.Unlock()
	rg, f, ae := c.functionFor()
	if ae != nil {
		return nil, ae
	}
	delete(rg.functions, f.name)
	return &rawResponse{status: http.StatusNoContent}, nil
}
