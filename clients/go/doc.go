// Package capvend is the Go client of capvend, the token vending service for AI agents.
//
// A runtime holds one CredentialManager per agent session. The manager keeps the session's
// WatchSession stream open in a goroutine, holds the newest token of every grant in memory,
// drops a token the moment the server revokes it, fails over between replicas with
// exponential backoff and full jitter, resumes with the stream's resume token, and watches
// the server's heartbeats so a silently dead connection is replaced without waiting for a
// request. Agent code never holds a token: it sends requests through RoundTripper (HTTP) or
// PerRPCCredentials (gRPC), which attach the current token for a resource.
//
// An orchestrator uses Orchestrator to start, end and revoke sessions; StartSession carries a
// request id so a retried call never opens a second session.
//
// Every refusal from the server is an *Error carrying the reason from the google.rpc.ErrorInfo
// detail of the gRPC status. Tokens, session credentials and orchestrator credentials never
// appear in an error message, an event or the String form of any value of this package.
package capvend
