package awsemu

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"maps"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// protocolKind is the wire protocol a service speaks.
type protocolKind int

const (
	protoEC2 protocolKind = iota
	protoQuery
	protoJSON
	protoRestJSON
	protoRestXML
)

// service is one emulated AWS service.
type service struct {
	// name is the SigV4 signing name, which routes requests.
	name string
	// eventSource is the service's CloudTrail event source.
	eventSource string
	protocol    protocolKind
	// xmlns is the XML namespace of query and EC2 answers.
	xmlns string
	// version is the API version query requests carry.
	version string
	// target is the X-Amz-Target prefix of JSON services.
	target string
	// jsonVersion is "1.0" or "1.1" for awsJson services.
	jsonVersion string
	// queryCompatible services also announce awsQuery error codes.
	queryCompatible bool
	// global services are recorded in us-east-1 and work in any region.
	global bool
	errs   errorKinds
	ops    map[string]*operation
	// routes map REST requests to operations.
	routes []restRoute
	// router replaces the protocol's routing (S3).
	router func(r *http.Request) (string, map[string]string, *apiError)
}

// operation is one API action of a service.
type operation struct {
	name string
	// eventName is the name CloudTrail records, when it differs from the
	// operation's (Lambda appends its API version: CreateFunction20150331).
	eventName string
	// action is the IAM action checked before the handler runs; empty means
	// the operation needs no permission (sts:GetCallerIdentity).
	action   string
	readOnly bool
	// dataEvent operations are not management events and CloudTrail's event
	// history does not show them.
	dataEvent bool
	// resources returns the ARNs the action is checked against; nil means
	// "*".
	resources func(e *Emulator, c *call) []string
	// requestKeys returns the service's condition keys that the request
	// itself carries (iam:PolicyARN), lower-cased; nil means none.
	requestKeys func(c *call) map[string][]string
	handle      func(e *Emulator, c *call) (any, error)
}

// trailEventName is the event name CloudTrail records for the operation.
func (o *operation) trailEventName() string {
	if o.eventName != "" {
		return o.eventName
	}
	return o.name
}

func (o *operation) resourcesOf(e *Emulator, c *call) []string {
	if o.resources == nil {
		return nil
	}
	return o.resources(e, c)
}

// restRoute maps a method and path pattern to an operation. Pattern
// segments in braces are labels.
type restRoute struct {
	method  string
	pattern []string
	op      string
}

func route(method, pattern, op string) restRoute {
	return restRoute{method: method, pattern: strings.Split(strings.Trim(pattern, "/"), "/"), op: op}
}

// route names the operation a request asks for.
func (s *service) route(r *http.Request, body []byte) (string, map[string]string, *apiError) {
	if s.router != nil {
		return s.router(r)
	}
	switch s.protocol {
	case protoEC2, protoQuery:
		action := r.URL.Query().Get("Action")
		if len(body) > 0 {
			if v, err := url.ParseQuery(string(body)); err == nil && v.Get("Action") != "" {
				action = v.Get("Action")
			}
		}
		if action == "" {
			return "", nil, errorf(http.StatusBadRequest, "MissingAction", "Could not find operation for this request.")
		}
		return action, nil, nil
	case protoJSON:
		prefix, op, ok := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
		if !ok || prefix != s.target {
			return "", nil, s.errs.clone(s.errs.unknownOperation)
		}
		return op, nil, nil
	case protoRestJSON:
		segs := strings.Split(strings.Trim(r.URL.EscapedPath(), "/"), "/")
		for _, rt := range s.routes {
			if rt.method != r.Method || len(rt.pattern) != len(segs) {
				continue
			}
			labels := map[string]string{}
			ok := true
			for i, p := range rt.pattern {
				if strings.HasPrefix(p, "{") {
					v, err := url.PathUnescape(segs[i])
					if err != nil || v == "" {
						ok = false
						break
					}
					labels[strings.Trim(p, "{}")] = v
				} else if p != segs[i] {
					ok = false
					break
				}
			}
			if ok {
				return rt.op, labels, nil
			}
		}
		return "", nil, s.errs.clone(s.errs.unknownOperation)
	}
	return "", nil, s.errs.clone(s.errs.unknownOperation)
}

func (s *service) unknownOperationMessage(op string) string {
	switch s.protocol {
	case protoQuery, protoEC2:
		return "The action " + op + " is not valid for this web service."
	default:
		return "The operation " + op + " is not supported by this emulator's " + s.name + " service."
	}
}

// authError turns an authentication failure into the service's error.
func (s *service) authError(f authFailure, detail string) *apiError {
	var ae *apiError
	switch f {
	case authBadSignature:
		ae = s.errs.clone(s.errs.badSignature)
		if detail != "" && detail != msgBadSignature {
			ae.Message = detail
		}
	case authExpired:
		ae = s.errs.clone(s.errs.expiredToken)
	case authSkewed:
		ae = s.errs.clone(s.errs.skewed)
		if detail != "" && s.protocol != protoEC2 {
			ae.Message = detail
		}
	default:
		ae = s.errs.clone(s.errs.unknownKey)
	}
	return ae
}

// rawResponse is an answer a handler has already rendered.
type rawResponse struct {
	status      int
	contentType string
	header      http.Header
	body        []byte
}

// ec2Envelope starts every EC2 answer; the writer fills in the request id.
type ec2Envelope struct {
	RequestID string `xml:"requestId"`
}

// ec2Return is the answer of EC2 actions that only say they succeeded.
type ec2Return struct {
	ec2Envelope
	Return bool `xml:"return"`
}

func (s *service) writeResult(w http.ResponseWriter, c *call, result any) {
	h := w.Header()
	h.Set("X-Amzn-RequestId", c.id)
	if raw, ok := result.(*rawResponse); ok {
		for k, v := range raw.header {
			h[k] = v
		}
		if raw.contentType != "" {
			h.Set("Content-Type", raw.contentType)
		}
		if s.protocol == protoRestXML {
			h.Set("X-Amz-Request-Id", c.id)
			h.Set("X-Amz-Id-2", hostID(c.id))
		}
		status := raw.status
		if status == 0 {
			status = http.StatusOK
		}
		w.WriteHeader(status)
		w.Write(raw.body)
		return
	}
	var buf bytes.Buffer
	switch s.protocol {
	case protoEC2:
		if result == nil {
			result = &ec2Return{Return: true}
		}
		if f := reflect.ValueOf(result).Elem().FieldByName("RequestID"); f.IsValid() && f.CanSet() {
			f.SetString(c.id)
		}
		buf.WriteString(xml.Header)
		enc := xml.NewEncoder(&buf)
		start := xml.StartElement{Name: xml.Name{Local: c.op.name + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: s.xmlns}}}
		if err := enc.EncodeElement(result, start); err != nil {
			c.svc.writeError(w, c, renderFailure(err))
			return
		}
		h.Set("Content-Type", "text/xml;charset=UTF-8")
	case protoQuery:
		buf.WriteString(xml.Header)
		enc := xml.NewEncoder(&buf)
		root := xml.StartElement{Name: xml.Name{Local: c.op.name + "Response"}, Attr: []xml.Attr{{Name: xml.Name{Local: "xmlns"}, Value: s.xmlns}}}
		resultStart := xml.StartElement{Name: xml.Name{Local: c.op.name + "Result"}}
		enc.EncodeToken(root)
		var err error
		if result != nil {
			err = enc.EncodeElement(result, resultStart)
		} else {
			enc.EncodeToken(resultStart)
			err = enc.EncodeToken(resultStart.End())
		}
		if err != nil {
			c.svc.writeError(w, c, renderFailure(err))
			return
		}
		enc.EncodeElement(struct {
			RequestID string `xml:"RequestId"`
		}{c.id}, xml.StartElement{Name: xml.Name{Local: "ResponseMetadata"}})
		enc.EncodeToken(root.End())
		enc.Flush()
		h.Set("Content-Type", "text/xml")
	case protoJSON, protoRestJSON:
		if result == nil {
			result = struct{}{}
		}
		if err := json.NewEncoder(&buf).Encode(result); err != nil {
			c.svc.writeError(w, c, renderFailure(err))
			return
		}
		if s.protocol == protoJSON {
			h.Set("Content-Type", "application/x-amz-json-"+s.jsonVersion)
		} else {
			h.Set("Content-Type", "application/json")
		}
	case protoRestXML:
		h.Set("X-Amz-Request-Id", c.id)
		h.Set("X-Amz-Id-2", hostID(c.id))
		if result != nil {
			buf.WriteString(xml.Header)
			if err := xml.NewEncoder(&buf).Encode(result); err != nil {
				c.svc.writeError(w, c, renderFailure(err))
				return
			}
			h.Set("Content-Type", "application/xml")
		}
	}
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

func renderFailure(err error) *apiError {
	return &apiError{Code: "InternalFailure", Status: http.StatusInternalServerError, Receiver: true, Message: "The emulator could not render its answer: " + err.Error()}
}

// hostID is S3's x-amz-id-2, derived from the request id.
func hostID(requestID string) string {
	return strings.ReplaceAll(requestID, "-", "") + "/emulated"
}

func (s *service) writeError(w http.ResponseWriter, c *call, ae *apiError) {
	h := w.Header()
	h.Set("X-Amzn-RequestId", c.id)
	status := ae.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	var body []byte
	switch s.protocol {
	case protoEC2:
		type ec2Err struct {
			Code    string `xml:"Code"`
			Message string `xml:"Message"`
		}
		v := struct {
			XMLName   xml.Name `xml:"Response"`
			Errors    []ec2Err `xml:"Errors>Error"`
			RequestID string   `xml:"RequestID"`
		}{Errors: []ec2Err{{ae.Code, ae.Message}}, RequestID: c.id}
		body, _ = xml.Marshal(v)
		body = append([]byte(xml.Header), body...)
		h.Set("Content-Type", "text/xml;charset=UTF-8")
	case protoQuery:
		typ := "Sender"
		if ae.Receiver {
			typ = "Receiver"
		}
		v := struct {
			XMLName xml.Name `xml:"ErrorResponse"`
			Xmlns   string   `xml:"xmlns,attr"`
			Error   struct {
				Type    string `xml:"Type"`
				Code    string `xml:"Code"`
				Message string `xml:"Message"`
			} `xml:"Error"`
			RequestID string `xml:"RequestId"`
		}{Xmlns: s.xmlns, RequestID: c.id}
		v.Error.Type, v.Error.Code, v.Error.Message = typ, ae.Code, ae.Message
		body, _ = xml.Marshal(v)
		body = append([]byte(xml.Header), body...)
		h.Set("Content-Type", "text/xml")
	case protoJSON:
		typ := ae.Code
		if s.queryCompatible {
			typ = "com.amazonaws." + s.name + "#" + ae.Code
			if ae.QueryCode != "" {
				fault := "Sender"
				if ae.Receiver {
					fault = "Receiver"
				}
				h.Set("X-Amzn-Query-Error", ae.QueryCode+";"+fault)
			}
		}
		body, _ = json.Marshal(map[string]string{"__type": typ, "message": ae.Message})
		h.Set("Content-Type", "application/x-amz-json-"+s.jsonVersion)
	case protoRestJSON:
		h.Set("X-Amzn-ErrorType", ae.Code)
		m := map[string]string{"message": ae.Message}
		if s.name == "lambda" {
			m["Type"] = "User"
			if ae.Receiver {
				m["Type"] = "Service"
			}
		}
		for k, v := range ae.Fields {
			m[k] = v
		}
		body, _ = json.Marshal(m)
		h.Set("Content-Type", "application/json")
	case protoRestXML:
		var b bytes.Buffer
		b.WriteString(xml.Header)
		enc := xml.NewEncoder(&b)
		root := xml.StartElement{Name: xml.Name{Local: "Error"}}
		enc.EncodeToken(root)
		enc.EncodeElement(ae.Code, xml.StartElement{Name: xml.Name{Local: "Code"}})
		enc.EncodeElement(ae.Message, xml.StartElement{Name: xml.Name{Local: "Message"}})
		for _, k := range sortedFieldKeys(ae.Fields) {
			enc.EncodeElement(ae.Fields[k], xml.StartElement{Name: xml.Name{Local: k}})
		}
		enc.EncodeElement(c.id, xml.StartElement{Name: xml.Name{Local: "RequestId"}})
		enc.EncodeElement(hostID(c.id), xml.StartElement{Name: xml.Name{Local: "HostId"}})
		enc.EncodeToken(root.End())
		enc.Flush()
		body = b.Bytes()
		h.Set("Content-Type", "application/xml")
		h.Set("X-Amz-Request-Id", c.id)
		h.Set("X-Amz-Id-2", hostID(c.id))
	}
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		h.Set("Retry-After", "1")
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

func sortedFieldKeys(m map[string]string) []string {
	return slices.Sorted(maps.Keys(m))
}

// epochTime renders as JSON epoch seconds, as the awsJson protocols send
// timestamps.
type epochTime time.Time

// MarshalJSON writes seconds since the epoch with millisecond precision.
func (t epochTime) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	return []byte(strconv.FormatFloat(float64(tt.UnixMilli())/1000, 'f', -1, 64)), nil
}

// UnmarshalJSON reads epoch seconds, integral or not.
func (t *epochTime) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		var s string
		if json.Unmarshal(b, &s) == nil {
			if tt, err := time.Parse(time.RFC3339Nano, s); err == nil {
				*t = epochTime(tt)
				return nil
			}
		}
		return err
	}
	sec := int64(f)
	*t = epochTime(time.Unix(sec, int64((f-float64(sec))*1e9)).UTC())
	return nil
}

// xmlTime renders a timestamp as ISO 8601 with milliseconds, as AWS's XML
// services do.
func xmlTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05.000Z")
}

// decodeJSON reads a JSON request body into v; an empty body is {}.
func (c *call) decodeJSON(v any) *apiError {
	if len(bytes.TrimSpace(c.body)) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return &apiError{Code: "SerializationException", Status: http.StatusBadRequest, Message: "Start of structure or map found where not expected: " + err.Error()}
	}
	return nil
}
