package console

import (
	"bytes"
	"encoding/json"
	"html/template"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/firebreak-ir/firebreak/controller/apiview"
	"github.com/firebreak-ir/firebreak/controller/auth"
	operatorv1 "github.com/firebreak-ir/firebreak/proto/gen/firebreak/operator/v1"
)

// page is what every template gets: the viewer and the page's own data.
type page struct {
	// Operator and Role name the signed-in viewer (empty when signed out).
	Operator, Role string
	// CSRF is the session's anti-forgery token, for forms and htmx.
	CSRF string
	// Data is the page's own data.
	Data any
	// Can reports whether the viewer may call an operator method (by its
	// short name, as in the policy).
	Can func(method string) bool
}

var templateFuncs = template.FuncMap{
	"ts": func(ts *timestamppb.Timestamp) string {
		if ts == nil || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
			return "—"
		}
		return ts.AsTime().UTC().Format("2006-01-02 15:04:05Z")
	},
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"enum": func(e protoreflect.Enum) string { return apiview.EnumName(e) },
	// dur shows a duration rounded to the second.
	"dur": func(d *durationpb.Duration) string {
		if d == nil {
			return "—"
		}
		return d.AsDuration().Round(time.Second).String()
	},
	// verdict names an evidence verification's outcome (empty when none).
	"verdict": func(v operatorv1.EvidenceVerdict) string {
		if v == operatorv1.EvidenceVerdict_EVIDENCE_VERDICT_UNSPECIFIED {
			return ""
		}
		return apiview.EnumName(v)
	},
	// json pretty-prints JSON bytes as text; the template escapes it.
	"json": func(b []byte) string {
		if len(b) == 0 {
			return ""
		}
		var out bytes.Buffer
		if json.Indent(&out, b, "", "  ") != nil {
			return string(b)
		}
		return out.String()
	},
}

// render executes a page template inside the layout. Rendering goes to a
// buffer first, so a template error never leaves half a page.
func (c *Console) render(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	p := page{Data: data, Can: func(string) bool { return false }}
	if v := viewerFrom(r.Context()); v != nil {
		p.Operator, p.Role, p.CSRF = v.op.Name, auth.RoleName(v.op.Role), v.session.CSRF
		p.Can = func(short string) bool { return c.can(r, method(short)) }
	}
	t := c.pages[name]
	var buf bytes.Buffer
	if t == nil {
		c.cfg.Logger.Error("console: no such template", "template", name)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		c.cfg.Logger.Error("console: rendering", "template", name, "error", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// renderFragment executes one named template alone (an htmx or SSE part).
func (c *Console) renderFragment(name, block string, data any) ([]byte, error) {
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, block, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// renderError shows an error page with the reason.
func (c *Console) renderError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	c.render(w, r, code, "error", map[string]any{"Code": code, "Status": http.StatusText(code), "Message": msg})
}

// serviceError shows a service's refusal with the HTTP status that fits
// its gRPC code, and its message.
func (c *Console) serviceError(w http.ResponseWriter, r *http.Request, err error) {
	st := status.Convert(err)
	c.renderError(w, r, httpStatus(st.Code()), st.Message())
}

// httpStatus maps a gRPC code onto an HTTP status.
func httpStatus(code codes.Code) int {
	switch code {
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.NotFound:
		return http.StatusNotFound
	case codes.InvalidArgument, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.FailedPrecondition, codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unavailable, codes.DeadlineExceeded:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
