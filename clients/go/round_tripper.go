package capvend

import (
	"fmt"
	"io"
	"net/http"
)

// maxDrain bounds how much of a refused response's body is read before it is closed, so
// the connection can be reused for the retry.
const maxDrain = 64 << 10

// RoundTripper is an http.RoundTripper that sends every request with
// "Authorization: Bearer <token>" for one resource. When the resource server answers 401, it
// retries the request once with a fresh token (see TokenSource.Refresh); a request whose
// body cannot be replayed (Body set, GetBody nil) is not retried and its 401 is returned.
// The request given to RoundTrip is never modified.
type RoundTripper struct {
	// Source supplies tokens, usually a *CredentialManager.
	Source TokenSource
	// Resource is the grant whose tokens are sent.
	Resource string
	// Scopes the token must carry; empty means the grant's.
	Scopes []string
	// Base sends the requests; nil means http.DefaultTransport.
	Base http.RoundTripper
}

// NewRoundTripper returns a RoundTripper over base (nil: http.DefaultTransport).
func NewRoundTripper(src TokenSource, resource string, base http.RoundTripper, scopes ...string) *RoundTripper {
	return &RoundTripper{Source: src, Resource: resource, Scopes: scopes, Base: base}
}

func (rt *RoundTripper) base() http.RoundTripper {
	if rt.Base != nil {
		return rt.Base
	}
	return http.DefaultTransport
}

// RoundTrip implements http.RoundTripper.
func (rt *RoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	tok, err := rt.Source.Token(ctx, rt.Resource, rt.Scopes...)
	if err != nil {
		closeBody(req)
		return nil, fmt.Errorf("capvend: no token for %q: %w", rt.Resource, err)
	}
	first := authorized(req, tok)
	resp, err := rt.base().RoundTrip(first)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if !replayable {
		return resp, nil
	}
	fresh, ferr := rt.Source.Refresh(ctx, rt.Resource, tok.ID, rt.Scopes...)
	if ferr != nil {
		return resp, nil // the resource server's 401 is the truest answer
	}
	second := authorized(req, fresh)
	if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
		body, berr := req.GetBody()
		if berr != nil {
			return resp, nil
		}
		second.Body = body
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	_ = resp.Body.Close()
	return rt.base().RoundTrip(second)
}

// authorized clones req with the token's Authorization header.
func authorized(req *http.Request, tok Token) *http.Request {
	r := req.Clone(req.Context())
	r.Header.Set("Authorization", "Bearer "+tok.AccessToken())
	return r
}

// closeBody honours the RoundTripper contract of closing the body even on error.
func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}
