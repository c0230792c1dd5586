"""capvend: a credential manager, token injection and an orchestrator helper for capvend."""

from ._buf_validate import ensure_buf_validate

ensure_buf_validate()
