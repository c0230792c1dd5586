package capvend

import "time"

// EventKind says what happened to a CredentialManager.
type EventKind int

const (
	// EventConnected: a stream opened (Endpoint; Resumed when it resumed an earlier one).
	EventConnected EventKind = iota + 1
	// EventToken: a token arrived for Resource (TokenID, ReplacesTokenID, ExpiresAt).
	EventToken
	// EventRevoked: the server revoked TokenIDs; Resources lists the grants whose held token
	// was dropped or that will get no more tokens (StoppedResources). Reason is Revoke's.
	EventRevoked
	// EventDisconnected: the stream failed (Err) and the manager retries on Endpoint after RetryIn.
	EventDisconnected
	// EventEnded: the session ended (Reason); the manager has stopped.
	EventEnded
	// EventFailed: a fatal refusal (Err); the manager has stopped.
	EventFailed
)

func (k EventKind) String() string {
	switch k {
	case EventConnected:
		return "connected"
	case EventToken:
		return "token"
	case EventRevoked:
		return "revoked"
	case EventDisconnected:
		return "disconnected"
	case EventEnded:
		return "ended"
	case EventFailed:
		return "failed"
	}
	return "unknown"
}

// Event is something that happened to a CredentialManager. It names tokens by id only.
type Event struct {
	Kind             EventKind
	Endpoint         string
	Resumed          bool
	Resource         string
	TokenID          string
	ReplacesTokenID  string
	ExpiresAt        time.Time
	TokenIDs         []string
	Resources        []string
	StoppedResources []string
	Reason           string
	Err              error
	RetryIn          time.Duration
}
