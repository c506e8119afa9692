package awsemu

import (
	"fmt"
	"net/http"
)

// apiError is an error as a service reports it on the wire: a code, a
// message and an HTTP status. Each protocol writer renders it in its own
// format.
type apiError struct {
	Code    string
	Message string
	Status  int
	// Receiver marks a server-side fault (the query protocols' Type element).
	Receiver bool
	// QueryCode is the awsQuery-compatible code that JSON services such as
	// SQS also announce in the X-Amzn-Query-Error header.
	QueryCode string
	// Fields are extra elements of the error body (S3's BucketName, Region).
	Fields map[string]string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{Code: code, Status: status, Message: fmt.Sprintf(format, args...)}
}

// errorKinds names the refusals every service expresses in its own words.
type errorKinds struct {
	// unknownKey answers a signature made with an access key that does not
	// exist or is not active.
	unknownKey *apiError
	// badSignature answers a signature that does not match.
	badSignature *apiError
	// expiredToken answers a session whose credentials have expired.
	expiredToken *apiError
	// missingAuth answers an unsigned request.
	missingAuth *apiError
	// skewed answers a request signed too far from the server's time.
	skewed *apiError
	// accessDenied is the code and status of an authorisation refusal.
	accessDeniedCode   string
	accessDeniedStatus int
	// throttled answers a request over the rate limit.
	throttled *apiError
	// validation is the code of a malformed or out-of-range parameter.
	validation string
	// unknownOperation answers an action the service does not have.
	unknownOperation *apiError
}

const (
	msgInvalidToken   = "The security token included in the request is invalid."
	msgExpiredToken   = "The security token included in the request is expired"
	msgBadSignature   = "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
	msgMissingAuth    = "Request is missing Authentication Token"
	msgSignatureStale = "Signature expired: the request time is too far from the current time."
)

// queryErrors are the refusals of the awsQuery services (IAM, STS, Auto
// Scaling, ELBv2).
func queryErrors() errorKinds {
	return errorKinds{
		unknownKey:         errorf(http.StatusForbidden, "InvalidClientTokenId", msgInvalidToken),
		badSignature:       errorf(http.StatusForbidden, "SignatureDoesNotMatch", msgBadSignature),
		expiredToken:       errorf(http.StatusForbidden, "ExpiredToken", msgExpiredToken),
		missingAuth:        errorf(http.StatusForbidden, "MissingAuthenticationToken", msgMissingAuth),
		skewed:             errorf(http.StatusForbidden, "SignatureDoesNotMatch", msgSignatureStale),
		accessDeniedCode:   "AccessDenied",
		accessDeniedStatus: http.StatusForbidden,
		throttled:          errorf(http.StatusBadRequest, "Throttling", "Rate exceeded"),
		validation:         "ValidationError",
		unknownOperation:   errorf(http.StatusBadRequest, "InvalidAction", "The action or operation requested is invalid. Verify that the action is typed correctly."),
	}
}

// ec2Errors are EC2's refusals, which use codes of their own.
func ec2Errors() errorKinds {
	return errorKinds{
		unknownKey:         errorf(http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials"),
		badSignature:       errorf(http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials"),
		expiredToken:       errorf(http.StatusBadRequest, "RequestExpired", "Request has expired."),
		missingAuth:        errorf(http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials"),
		skewed:             errorf(http.StatusBadRequest, "RequestExpired", "Request has expired."),
		accessDeniedCode:   "UnauthorizedOperation",
		accessDeniedStatus: http.StatusForbidden,
		throttled:          errorf(http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded."),
		validation:         "InvalidParameterValue",
		unknownOperation:   errorf(http.StatusBadRequest, "InvalidAction", "The action is not valid for this web service."),
	}
}

// jsonErrors are the refusals of the awsJson services (Organizations,
// CloudTrail, SQS) and of the restJson ones (Lambda, Account).
func jsonErrors(throttleCode string, throttleStatus, deniedStatus int) errorKinds {
	return errorKinds{
		unknownKey:         errorf(http.StatusForbidden, "UnrecognizedClientException", msgInvalidToken),
		badSignature:       errorf(http.StatusForbidden, "InvalidSignatureException", msgBadSignature),
		expiredToken:       errorf(http.StatusForbidden, "ExpiredTokenException", msgExpiredToken),
		missingAuth:        errorf(http.StatusForbidden, "MissingAuthenticationTokenException", msgMissingAuth),
		skewed:             errorf(http.StatusForbidden, "InvalidSignatureException", msgSignatureStale),
		accessDeniedCode:   "AccessDeniedException",
		accessDeniedStatus: deniedStatus,
		throttled:          errorf(throttleStatus, throttleCode, "Rate exceeded"),
		validation:         "ValidationException",
		unknownOperation:   errorf(http.StatusBadRequest, "UnknownOperationException", "The requested operation is not recognized by the service."),
	}
}

// s3Errors are S3's refusals.
func s3Errors() errorKinds {
	return errorKinds{
		unknownKey:         errorf(http.StatusForbidden, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."),
		badSignature:       errorf(http.StatusForbidden, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method."),
		expiredToken:       errorf(http.StatusBadRequest, "ExpiredToken", "The provided token has expired."),
		missingAuth:        errorf(http.StatusForbidden, "AccessDenied", "Access Denied"),
		skewed:             errorf(http.StatusForbidden, "RequestTimeTooSkewed", "The difference between the request time and the current time is too large."),
		accessDeniedCode:   "AccessDenied",
		accessDeniedStatus: http.StatusForbidden,
		throttled:          errorf(http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate."),
		validation:         "InvalidArgument",
		unknownOperation:   errorf(http.StatusNotImplemented, "NotImplemented", "A header you provided implies functionality that is not implemented."),
	}
}

func (k errorKinds) clone(e *apiError) *apiError {
	c := *e
	return &c
}

// invalid returns the service's validation error with the given message.
func (k errorKinds) invalid(format string, args ...any) *apiError {
	return &apiError{Code: k.validation, Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}
