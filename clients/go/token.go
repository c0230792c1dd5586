package capvend

import (
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Token is a capability token held by a CredentialManager. Its printed and logged forms
// (String, GoString, LogValue) name it by ID only; AccessToken is the one way to the JWT.
type Token struct {
	// ID is the token's jti: the only name under which logs and audit records mention it.
	ID string
	// Resource is the token's audience.
	Resource string
	// Scopes are the scopes the token carries.
	Scopes []string
	// IssuedAt and ExpiresAt come from the server (iat and exp).
	IssuedAt, ExpiresAt time.Time

	value string
}

// AccessToken is the JWT to send as "Authorization: Bearer <AccessToken>".
func (t Token) AccessToken() string { return t.value }

// String names the token without its secret.
func (t Token) String() string {
	return fmt.Sprintf("capvend.Token{ID:%s Resource:%s Scopes:%v ExpiresAt:%s}", t.ID, t.Resource, t.Scopes, t.ExpiresAt.UTC().Format(time.RFC3339))
}

// GoString keeps %#v from printing the secret.
func (t Token) GoString() string { return t.String() }

// LogValue keeps log/slog from printing the secret.
func (t Token) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", t.ID), slog.String("resource", t.Resource), slog.Time("expires_at", t.ExpiresAt))
}

// hasScopes reports whether the token carries every scope in want.
func (t Token) hasScopes(want []string) bool {
	for _, s := range want {
		if !slices.Contains(t.Scopes, s) {
			return false
		}
	}
	return true
}

// usableAt reports whether the token may be handed out at now: it still has more than
// margin of life, where margin is min(minRemaining, lifetime/4), so a request sent with it
// does not arrive with a dead token, and short test lifetimes still work.
func (t Token) usableAt(now time.Time, minRemaining time.Duration) bool {
	margin := min(minRemaining, t.ExpiresAt.Sub(t.IssuedAt)/4)
	return now.Before(t.ExpiresAt.Add(-margin))
}
