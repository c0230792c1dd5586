package capvend

import (
	"context"

	"google.golang.org/grpc/credentials"
)

// PerRPCCredentials attaches "authorization: Bearer <token>" for one resource to every gRPC
// call made to that resource's server. Use it with grpc.WithPerRPCCredentials or
// grpc.PerRPCCredentials. A failure to get a token fails the call with the *Error's code.
type PerRPCCredentials struct {
	// Source supplies tokens, usually a *CredentialManager.
	Source TokenSource
	// Resource is the grant whose tokens are sent.
	Resource string
	// Scopes the token must carry; empty means the grant's.
	Scopes []string
	// AllowInsecure lets the token travel over a connection without transport security;
	// for local development and tests only. By default gRPC refuses to send it in clear.
	AllowInsecure bool
}

var _ credentials.PerRPCCredentials = (*PerRPCCredentials)(nil)

// NewPerRPCCredentials returns credentials that require transport security.
func NewPerRPCCredentials(src TokenSource, resource string, scopes ...string) *PerRPCCredentials {
	return &PerRPCCredentials{Source: src, Resource: resource, Scopes: scopes}
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c *PerRPCCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	tok, err := c.Source.Token(ctx, c.Resource, c.Scopes...)
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok.AccessToken()}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c *PerRPCCredentials) RequireTransportSecurity() bool { return !c.AllowInsecure }
