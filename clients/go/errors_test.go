package capvend

import (
	"errors"
	"fmt"
	"testing"

	capvendv1 "capvend.dev/client/gen/capvend/v1"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func withInfo(t *testing.T, code codes.Code, msg, domain, reason string) error {
	t.Helper()
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Domain: domain, Reason: reason, Metadata: map[string]string{"scope": "delete"}})
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestFromErrorReadsErrorInfo(t *testing.T) {
	e, ok := FromError(withInfo(t, codes.PermissionDenied, "scope delete not granted", ErrorDomain, "SCOPE_NOT_GRANTED"))
	if !ok {
		t.Fatal("not decoded")
	}
	if e.Code != codes.PermissionDenied || e.Reason != ReasonScopeNotGranted || e.Metadata["scope"] != "delete" {
		t.Fatalf("decoded %+v", e)
	}
	if !e.Fatal() || e.Retryable() {
		t.Errorf("SCOPE_NOT_GRANTED: fatal=%v retryable=%v", e.Fatal(), e.Retryable())
	}
	if status.Code(e) != codes.PermissionDenied {
		t.Errorf("status.Code of *Error = %v", status.Code(e))
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", e), &Error{Reason: ReasonScopeNotGranted}) {
		t.Error("errors.Is by reason through a wrap failed")
	}
}

func TestFromErrorIgnoresOtherDomains(t *testing.T) {
	e, _ := FromError(withInfo(t, codes.Unauthenticated, "no", "example.com", "SESSION_ENDED"))
	if e.Reason != "" {
		t.Fatalf("reason from a foreign domain was taken: %q", e.Reason)
	}
	if e.Fatal() {
		t.Error("an error without a capvend reason must not be fatal")
	}
}

func TestRetryableReasons(t *testing.T) {
	e, _ := FromError(withInfo(t, codes.Unavailable, "lagging", ErrorDomain, "RESUME_AHEAD"))
	if e.Fatal() || !e.Retryable() {
		t.Errorf("RESUME_AHEAD: fatal=%v retryable=%v", e.Fatal(), e.Retryable())
	}
	e, _ = FromError(status.Error(codes.Unavailable, "connection refused"))
	if e.Reason != "" || !e.Retryable() {
		t.Errorf("transport error: %+v", e)
	}
	if _, ok := FromError(errors.New("plain")); ok {
		t.Error("a plain error has no status")
	}
}

// Every reason of the contract has a deliberate place in the manager's rules, and the
// constants spell the enum's value names.
func TestEveryContractReasonIsClassified(t *testing.T) {
	for num, name := range capvendv1.ErrorReason_name {
		if num == 0 {
			continue
		}
		if _, ok := fatal[Reason(name)]; !ok {
			t.Errorf("capvend.v1.ErrorReason %s is not classified as fatal or not", name)
		}
	}
	for r := range fatal {
		if _, ok := capvendv1.ErrorReason_value[string(r)]; !ok {
			t.Errorf("reason %s is not in the contract", r)
		}
	}
}
