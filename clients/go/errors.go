package capvend

import (
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ErrorDomain is the google.rpc.ErrorInfo domain of every refusal capvend sends.
const ErrorDomain = "capvend.dev"

// Reason is why capvend refused a call: the name of a capvend.v1.ErrorReason value, as
// carried in the google.rpc.ErrorInfo detail of the gRPC status.
type Reason string

// The reasons capvend sends: the values of capvend.v1.ErrorReason (errors.proto says when
// each is sent). A newer server may send others; they are still reported in Error.Reason.
const (
	ReasonInvalidArgument       Reason = "INVALID_ARGUMENT"
	ReasonMissingCredential     Reason = "MISSING_CREDENTIAL"
	ReasonUnknownCredential     Reason = "UNKNOWN_CREDENTIAL"
	ReasonWrongCaller           Reason = "WRONG_CALLER"
	ReasonSessionNotFound       Reason = "SESSION_NOT_FOUND"
	ReasonSessionEnded          Reason = "SESSION_ENDED"
	ReasonResourceNotGranted    Reason = "RESOURCE_NOT_GRANTED"
	ReasonScopeNotGranted       Reason = "SCOPE_NOT_GRANTED"
	ReasonScopeDenied           Reason = "SCOPE_DENIED"
	ReasonActionDenied          Reason = "ACTION_DENIED"
	ReasonTokenRevoked          Reason = "TOKEN_REVOKED"
	ReasonAuditUnavailable      Reason = "AUDIT_UNAVAILABLE"
	ReasonRevocationUnavailable Reason = "REVOCATION_UNAVAILABLE"
	ReasonSessionStoreUnavail   Reason = "SESSION_STORE_UNAVAILABLE"
	ReasonSlowReader            Reason = "SLOW_READER"
	ReasonDraining              Reason = "DRAINING"
	ReasonResumeAhead           Reason = "RESUME_AHEAD"
	ReasonResumeTokenExpired    Reason = "RESUME_TOKEN_EXPIRED"
	ReasonRequestIDReused       Reason = "REQUEST_ID_REUSED"
	ReasonGrantRevoked          Reason = "GRANT_REVOKED"
	ReasonTTLExceedsGrant       Reason = "TTL_EXCEEDS_GRANT"
	ReasonStreamLimit           Reason = "STREAM_LIMIT"
	ReasonSessionQuota          Reason = "SESSION_QUOTA"
	ReasonOverloaded            Reason = "OVERLOADED"
	ReasonPolicyChanged         Reason = "POLICY_CHANGED"
	ReasonInternal              Reason = "INTERNAL"
	ReasonMessageTooLarge       Reason = "MESSAGE_TOO_LARGE"
)

// fatal says, for every reason of the contract, whether it ends a CredentialManager for
// good: retrying with the same session credential and grants cannot succeed. The others,
// every reason not listed here (a newer server's) and every error without a reason (a
// transport failure, a proxy's answer) make the manager move on to the next endpoint.
// RESUME_TOKEN_EXPIRED and GRANT_REVOKED are not fatal: the manager starts fresh, or drops
// the one grant, and goes on.
var fatal = map[Reason]bool{
	ReasonInvalidArgument:       true,
	ReasonMissingCredential:     true,
	ReasonUnknownCredential:     true,
	ReasonWrongCaller:           true,
	ReasonSessionNotFound:       true,
	ReasonSessionEnded:          true,
	ReasonResourceNotGranted:    true,
	ReasonScopeNotGranted:       true,
	ReasonScopeDenied:           true,
	ReasonActionDenied:          true,
	ReasonTokenRevoked:          false,
	ReasonAuditUnavailable:      false,
	ReasonRevocationUnavailable: false,
	ReasonSessionStoreUnavail:   false,
	ReasonSlowReader:            false,
	ReasonDraining:              false,
	ReasonResumeAhead:           false,
	ReasonResumeTokenExpired:    false,
	ReasonRequestIDReused:       true,
	ReasonGrantRevoked:          false,
	ReasonTTLExceedsGrant:       true,
	ReasonStreamLimit:           false,
	ReasonSessionQuota:          false,
	ReasonOverloaded:            false,
	ReasonPolicyChanged:         true,
	ReasonInternal:              false,
	ReasonMessageTooLarge:       true,
}

// Error is a refusal: the gRPC code, capvend's reason (from the ErrorInfo detail) and the
// server's human message. It never holds a token or credential.
type Error struct {
	// Code is the gRPC status code.
	Code codes.Code
	// Reason is the ErrorInfo reason, empty when the status carried no capvend ErrorInfo
	// (a transport failure, or an answer from something other than capvend).
	Reason Reason
	// Metadata is the ErrorInfo metadata: the field, resource or scope involved.
	Metadata map[string]string
	// Message is the human-readable message; branch on Reason, not on this.
	Message string

	status *status.Status
}

func (e *Error) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("capvend: %s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("capvend: %s (%s): %s", e.Reason, e.Code, e.Message)
}

// GRPCStatus lets status.FromError and status.Code see the original status.
func (e *Error) GRPCStatus() *status.Status {
	if e.status != nil {
		return e.status
	}
	return status.New(e.Code, e.Message)
}

// Is matches another *Error by reason (or by code when the target has no reason), so
// errors.Is(err, &capvend.Error{Reason: capvend.ReasonSessionEnded}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.Reason != "" {
		return t.Reason == e.Reason
	}
	return t.Code == e.Code
}

// Fatal reports whether the reason means retrying cannot help.
func (e *Error) Fatal() bool { return fatal[e.Reason] }

// Retryable reports whether the same call may succeed later, possibly on another replica:
// UNAVAILABLE, ABORTED, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED answers, unless the
// reason is fatal.
func (e *Error) Retryable() bool {
	if e.Fatal() {
		return false
	}
	switch e.Code {
	case codes.Unavailable, codes.Aborted, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}

// FromError decodes a gRPC error into an *Error, reading the reason from the
// google.rpc.ErrorInfo detail whose domain is ErrorDomain. It returns nil for nil, and
// false when err carries no gRPC status.
func FromError(err error) (*Error, bool) {
	if err == nil {
		return nil, false
	}
	var ce *Error
	if errors.As(err, &ce) {
		return ce, true
	}
	st, ok := status.FromError(err)
	if !ok {
		return nil, false
	}
	e := &Error{Code: st.Code(), Message: st.Message(), status: st}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == ErrorDomain {
			e.Reason = Reason(info.GetReason())
			e.Metadata = info.GetMetadata()
			break
		}
	}
	return e, true
}

// ErrClosed is returned by a CredentialManager's methods after Close or once its context
// has ended.
var ErrClosed = errors.New("capvend: credential manager closed")

// localError is a refusal decided by the client itself, shaped like the server's.
func localError(code codes.Code, reason Reason, format string, args ...any) *Error {
	return &Error{Code: code, Reason: reason, Message: fmt.Sprintf(format, args...)}
}
