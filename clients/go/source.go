package capvend

import "context"

// TokenSource is what injection needs from a credential holder. *CredentialManager is one;
// tests and other holders may supply their own.
type TokenSource interface {
	// Token returns a token for resource carrying scopes (every scope of the grant when
	// none are named), never revoked and never nearly expired, waiting while none is held
	// until ctx ends.
	Token(ctx context.Context, resource string, scopes ...string) (Token, error)
	// Refresh returns a token for resource other than the one whose id is rejected: the
	// one held now when it differs, else a newly issued one. Injection calls it once after
	// a resource server refused rejected.
	Refresh(ctx context.Context, resource, rejected string, scopes ...string) (Token, error)
}
