package awsemu

import (
	"net/http"
	"time"
)

// GetSessionToken's duration limits for IAM users.
const (
	minUserSessionSeconds     = 900
	maxUserSessionSeconds     = 129600
	defaultUserSessionSeconds = 43200
)

// stsGetSessionToken issues an IAM user temporary credentials that act as
// the user. Like AWS, it needs no permission, and the credentials outlive
// the access key that minted them: only a deny on the user conditioned on
// aws:TokenIssueTime (or the user's deletion) stops them early. MFA is not
// emulated, so every such session is one without MFA.
func (e *Emulator) stsGetSessionToken(c *call) (any, error) {
	if c.form.str("SerialNumber") != "" || c.form.str("TokenCode") != "" {
		return nil, iamValidation("MFA devices are not emulated: call GetSessionToken without SerialNumber and TokenCode")
	}
	duration := int64(defaultUserSessionSeconds)
	if n, ok, err := c.form.integer("DurationSeconds"); err != nil {
		return nil, iamValidation("%v", err)
	} else if ok {
		if n < minUserSessionSeconds || n > maxUserSessionSeconds {
			return nil, iamValidation("1 validation error detected: Value '%d' at 'durationSeconds' failed to satisfy constraint: Member must have value between %d and %d",
				n, minUserSessionSeconds, maxUserSessionSeconds)
		}
		duration = n
	}
	switch {
	case c.who.kind == principalSession || c.who.cred.userSession != nil:
		return nil, errorf(http.StatusForbidden, "AccessDenied", "Cannot call GetSessionToken with session credentials")
	case c.who.kind != principalUser:
		return nil, errorf(http.StatusForbidden, "AccessDenied", "The emulator issues session tokens to IAM users only")
	}
	s := &userSession{issued: c.now, expires: c.now.Add(time.Duration(duration) * time.Second)}
	cred := &credential{id: e.ids.accessKeyID("ASIA"), secret: e.ids.secret(), token: e.ids.sessionToken(),
		account: c.who.account, kind: principalUser, user: c.who.cred.user, userSession: s}
	e.credMu.Lock()
	e.creds[cred.id] = cred
	e.credMu.Unlock()
	c.trail.response = map[string]any{
		"credentials": map[string]string{"accessKeyId": cred.id, "expiration": s.expires.Format(time.RFC1123)},
	}
	return &struct {
		Credentials stsCredentials `xml:"Credentials"`
	}{stsCredentials{cred.id, cred.secret, cred.token, xmlTime(s.expires)}}, nil
}
