"""The orchestrator helper against a real server: idempotent StartSession, revocation, reasons."""

from __future__ import annotations

import uuid

import grpc
import pytest

from capvend import CapvendError, ErrorReason, Orchestrator, issue_token
from conftest import SCENARIO_GRANTS
from processes import CapvendServer


def test_a_retry_with_the_same_request_id_returns_the_same_session(orchestrator: Orchestrator) -> None:
    rid = str(uuid.uuid4())
    first = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice", request_id=rid)
    again = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice", request_id=rid)
    assert first.request_id == again.request_id == rid
    assert again.session_id == first.session_id and again.expires_at == first.expires_at
    other = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    assert other.session_id != first.session_id
    uuid.UUID(other.request_id)  # generated when not given


def test_the_same_request_id_for_another_request_is_refused(orchestrator: Orchestrator) -> None:
    rid = str(uuid.uuid4())
    orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice", request_id=rid)
    with pytest.raises(CapvendError) as e:
        orchestrator.start_session("scenario-bot", [("crm", ["read"])], user_id="alice", request_id=rid)
    assert e.value.reason == ErrorReason.REQUEST_ID_REUSED and e.value.retryable is False


def test_the_session_credential_stays_out_of_repr(orchestrator: Orchestrator) -> None:
    session = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    assert session.session_credential not in repr(session)


def test_bad_input_is_refused_with_invalid_argument_naming_the_field(orchestrator: Orchestrator) -> None:
    with pytest.raises(CapvendError) as e:
        orchestrator.start_session("", SCENARIO_GRANTS)
    assert e.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.reason_name == "INVALID_ARGUMENT" and e.value.metadata.get("field") == "agent_id"


def test_an_unknown_orchestrator_credential_is_unauthenticated(server: CapvendServer) -> None:
    with Orchestrator(server.endpoint, "not-the-orchestrator-token") as orch:
        with pytest.raises(CapvendError) as e:
            orch.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    assert (e.value.code, e.value.reason_name) == (grpc.StatusCode.UNAUTHENTICATED, "UNKNOWN_CREDENTIAL")


def test_revoke_takes_exactly_one_target(orchestrator: Orchestrator) -> None:
    with pytest.raises(ValueError):
        orchestrator.revoke(reason="none")
    with pytest.raises(ValueError):
        orchestrator.revoke(session_id="a", user_id="b")


def test_revoking_a_session_ends_it_for_its_runtime(server: CapvendServer, orchestrator: Orchestrator) -> None:
    session = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    assert issue_token(server.endpoint, session.session_credential, "crm", ["read"]).access_token.count(".") == 2
    revocation = orchestrator.revoke(session_id=session.session_id, reason="test")
    assert revocation.revocation_id and revocation.revoked_at > 0
    with pytest.raises(CapvendError) as e:
        issue_token(server.endpoint, session.session_credential, "crm", ["read"])
    assert e.value.reason_name in ("SESSION_ENDED", "UNKNOWN_CREDENTIAL")
    assert e.value.code is grpc.StatusCode.UNAUTHENTICATED


def test_end_session_returns_when_it_ended(orchestrator: Orchestrator) -> None:
    session = orchestrator.start_session("scenario-bot", SCENARIO_GRANTS, user_id="alice")
    assert orchestrator.end_session(session.session_id, "done") > 0
    with pytest.raises(CapvendError) as e:
        orchestrator.end_session("ses_0000000000000000000000", "nothing")
    assert e.value.reason_name == "SESSION_NOT_FOUND" and e.value.code is grpc.StatusCode.NOT_FOUND
