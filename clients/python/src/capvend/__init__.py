"""capvend: a credential manager, token injection and an orchestrator helper for capvend.

    from capvend import CredentialManager, Orchestrator

The generated contract lives in ``capvend.v1`` (messages, ``.pyi`` stubs, gRPC stubs).
Injection needs optional packages: ``capvend.requests_auth`` (requests) and
``capvend.httpx_auth`` (httpx).
"""

from ._buf_validate import ensure_buf_validate

ensure_buf_validate()

from .async_credential_manager import AsyncCredentialManager  # noqa: E402
from .backoff import Backoff, full_jitter_delay  # noqa: E402
from .credential_manager import CredentialManager  # noqa: E402
from .errors import CapvendError  # noqa: E402
from .events import Connected, Disconnected, Event, Failed, SessionEnded, TokenRenewed, TokensRevoked  # noqa: E402
from .orchestrator import Orchestrator, Revocation, Session  # noqa: E402
from .reasons import FATAL_REASONS, RETRYABLE_REASONS  # noqa: E402
from .runtime_calls import issue_token  # noqa: E402
from .scrub import scrub_text, scrub_value  # noqa: E402
from .token_cache import Grant, HeldToken  # noqa: E402
from .tool import authorized_tool  # noqa: E402
from .v1.errors_pb2 import ErrorReason  # noqa: E402

__all__ = [
    "AsyncCredentialManager",
    "Backoff",
    "CapvendError",
    "Connected",
    "CredentialManager",
    "Disconnected",
    "ErrorReason",
    "Event",
    "FATAL_REASONS",
    "Failed",
    "Grant",
    "HeldToken",
    "Orchestrator",
    "RETRYABLE_REASONS",
    "Revocation",
    "Session",
    "SessionEnded",
    "TokenRenewed",
    "TokensRevoked",
    "authorized_tool",
    "full_jitter_delay",
    "issue_token",
    "scrub_text",
    "scrub_value",
]
__version__ = "0.1.0"
