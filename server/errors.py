"""The one mapping from domain errors to HTTP: problem details (RFC 9457).

Every refusal is ``application/problem+json`` with ``type`` ending in the error's
stable code, ``code`` itself, a value-free ``detail``, and the error's ids and
JSON paths as extra members. A 5xx carries a generic message and a request id;
the exception goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException, ProblemDetailsPlugin
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from sync.edits import InvalidEditError
from sync.errors import (
    ClockDriftError,
    LinkDownError,
    MalformedBatchError,
    OversizedBatchError,
    PeerRefusedError,
    ReplayedBatchError,
    StoreMismatchError,
    SyncError,
    UnknownNodeError,
    VersionMismatchError,
)

from server.access import AccessDeniedError, OutOfScopeError, TooManyRevealsError
from server.consents import ConsentRequiredError, ConsentTimeError, CustomerDeletedError
from server.key_authority import CustomerGoneError, NoSuchScopeKeyError, NotInRegistryError
from server.keyring import NoScopeKeyError, NotNormalisableError
from server.offboarding import NotAPartnerError, NotPurgedYetError
from server.phones import PhoneNameError, PhoneNodeError
from server.sync_auth import SyncAuthError
from server.sessions import (
    AccountDisabledError,
    ForbiddenError,
    NotAuthenticatedError,
    SignInFailedError,
    TooManyAttemptsError,
)
from server.users import UnknownSiteError, UserGoneError, UsernameTakenError
from server.work.errors import ComplaintStateError, NotAComplaintError, NotTicketOwnerError
from server.work_errors import (
    BadCursorError,
    BadTimeError,
    CallRefusedError,
    TaskClosedError,
    TaskKindError,
    UnknownUserError,
)
from server.work.kpi import BadReportError

log = logging.getLogger(__name__)

PROBLEM_BASE = "https://outpost.example/problems/"

#: domain error -> HTTP status; the first matching class (in MRO order) wins
STATUS: dict[type[Exception], int] = {
    MalformedBatchError: 400,
    InvalidEditError: 422,
    OversizedBatchError: 413,
    UnknownNodeError: 403,
    ClockDriftError: 422,
    VersionMismatchError: 409,
    ReplayedBatchError: 409,
    StoreMismatchError: 409,
    LinkDownError: 503,
    PeerRefusedError: 502,
    SyncError: 400,
}


class NotFoundError(Exception):
    """The object asked for does not exist here (or is out of the caller's scope)."""

    code = "not_found"

    def __init__(self, collection: str, row_id: str) -> None:
        self.collection = collection
        self.row_id = row_id
        super().__init__(f"No `{collection}` row `{row_id}` here")
        self.message = str(self)

    def details(self) -> dict[str, object]:
        return {"collection": self.collection, "row_id": self.row_id}


class UnauthorizedError(Exception):
    code = "unauthorized"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.message = reason

    def details(self) -> dict[str, object]:
        return {}


class WrongNodeError(Exception):
    """The operation runs at another node (erasure and key issuance run at HQ)."""

    code = "wrong_node"

    def __init__(self, operation: str, node: str, where: str) -> None:
        self.operation = operation
        self.node = node
        self.where = where
        super().__init__(f"`{operation}` is done at `{where}`, not at `{node}`; send it there")
        self.message = str(self)

    def details(self) -> dict[str, object]:
        return {"operation": self.operation, "node": self.node, "at": self.where}


class BadSignatureError(Exception):
    """A request signed with a key the registry does not hold for that node."""

    code = "bad_signature"

    def __init__(self, node: str) -> None:
        self.node = node
        super().__init__(f"the signature does not verify with the key HQ holds for `{node}`")
        self.message = str(self)

    def details(self) -> dict[str, object]:
        return {"node": self.node}


class PolicyReloadError(Exception):
    """The policy file on disk cannot be used; the policy in force stays in force."""

    code = "policy_invalid"

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        self.message = f"{problem}; the policy in force is unchanged"
        super().__init__(self.message)

    def details(self) -> dict[str, object]:
        return {"path": self.path}


STATUS[NotFoundError] = 404
STATUS[OutOfScopeError] = 404
STATUS[AccessDeniedError] = 403
STATUS[TooManyRevealsError] = 429
STATUS[PolicyReloadError] = 422
STATUS[UnauthorizedError] = 401
STATUS[WrongNodeError] = 409
STATUS[BadSignatureError] = 403
STATUS[NoScopeKeyError] = 409
STATUS[NotNormalisableError] = 422
STATUS[NotInRegistryError] = 404
STATUS[NoSuchScopeKeyError] = 404
STATUS[CustomerGoneError] = 404
STATUS[NotAuthenticatedError] = 401
STATUS[SignInFailedError] = 401
STATUS[AccountDisabledError] = 403
STATUS[ForbiddenError] = 403
STATUS[TooManyAttemptsError] = 429
STATUS[UsernameTakenError] = 409
STATUS[UnknownSiteError] = 422
STATUS[UserGoneError] = 404
STATUS[NotAPartnerError] = 404
STATUS[NotPurgedYetError] = 409
STATUS[SyncAuthError] = 403
STATUS[ConsentRequiredError] = 422
STATUS[ConsentTimeError] = 422
STATUS[CustomerDeletedError] = 409
STATUS[BadCursorError] = 400
STATUS[CallRefusedError] = 409
STATUS[TaskClosedError] = 409
STATUS[ComplaintStateError] = 409
STATUS[NotTicketOwnerError] = 403
STATUS[NotAComplaintError] = 422
STATUS[BadTimeError] = 422
STATUS[UnknownUserError] = 422
STATUS[TaskKindError] = 422
STATUS[PhoneNodeError] = 409
STATUS[PhoneNameError] = 422


class Problem(msgspec.Struct, kw_only=True):
    """An error answer (RFC 9457 problem details, ``application/problem+json``).

    Further members carry the error's ids and JSON paths; bad input lists its
    ``errors`` (message, key, source), a 5xx its ``request_id``."""

    type: str
    title: str
    status: int
    detail: str
    #: the stable error code (the end of ``type``)
    code: str


PROBLEM_MEDIA_TYPE = "application/problem+json"

#: what each error status means across the API (the spec's response descriptions)
PROBLEM_STATUSES = {
    400: "Bad input: the body, a parameter or the path is not what the operation takes (`errors` says where)",
    401: "Not signed in: no valid access token or operator token",
    403: "Not permitted: the caller's role, node or signature may not do this",
    404: "No such row here, or out of the caller's scope",
    409: "Refused in the current state (wrong node for the operation, a duplicate, a row already gone)",
    413: "The body is larger than this node accepts",
    422: "A well-formed value the rules refuse (`path` says which)",
    429: "Too many attempts: retry after `Retry-After` seconds",
    502: "The upstream node refused the exchange",
    503: "The upstream node cannot be reached",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The error answers an operation documents (its route's ``responses=``)."""
    return {status: ResponseSpec(data_container=Problem, media_type=PROBLEM_MEDIA_TYPE, generate_examples=False,
                                 description=PROBLEM_STATUSES[status])
            for status in statuses}
STATUS[BadReportError] = 400


def status_of(exc: Exception) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def to_problem(exc: Exception) -> ProblemDetailsException:
    code: str = getattr(exc, "code", "error")
    message: str = getattr(exc, "message", str(exc))
    details: Callable[[], dict[str, object]] | None = getattr(exc, "details", None)
    extra: dict[str, Any] = {"code": code, **(details() if details else {})}
    status = status_of(exc)
    extra_headers: Callable[[], dict[str, str]] | None = getattr(exc, "headers", None)
    headers = {**({"www-authenticate": "Bearer"} if status == 401 else {}), **(extra_headers() if extra_headers else {})}
    return ProblemDetailsException(
        status_code=status, type_=PROBLEM_BASE + code, title=code.replace("_", " "), detail=message, extra=extra,
        headers=headers or None,
    )


# msgspec and litestar echo offending values in quotes ("Invalid enum value 'x'");
# values may be PII. Type and field names (in backticks) stay: they say what to fix.
_ECHOED = re.compile(r"(Invalid enum value|Invalid value|got) (?:'[^']*'|\"[^\"]*\")")
# "Validation failed for GET /customers/<raw path>": the path may hold anything
_REQUEST_LINE = re.compile(r"(Validation failed for [A-Z]+) \S+")


def _scrub(text: str) -> str:
    text = _ECHOED.sub(lambda m: m.group(1), text)
    return _REQUEST_LINE.sub(lambda m: m.group(1) + " request", text)


def http_to_problem(exc: HTTPException) -> ProblemDetailsException:
    """Litestar's own refusals (validation, 404, 405, 413) as value-free problems."""
    code = {400: "bad_request", 401: "unauthorized", 404: "not_found", 405: "method_not_allowed",
            413: "too_large", 415: "unsupported_media_type"}.get(exc.status_code, "http_error")
    extra: dict[str, Any] = {"code": code}
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        extra["errors"] = [
            {"message": _scrub(str(e.get("message", ""))), "key": e.get("key"), "source": e.get("source")}
            for e in exc.extra if isinstance(e, dict)
        ]
    return ProblemDetailsException(
        status_code=exc.status_code, type_=PROBLEM_BASE + code, title=code.replace("_", " "),
        detail=_scrub(exc.detail), extra=extra, headers=exc.headers,
    )


def internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Any other exception: logged with a request id, answered without details."""
    request_id = secrets.token_hex(8)
    log.error("request failed", extra={"request_id": request_id, "path": request.url.path, "error": type(exc).__name__},
              exc_info=exc)
    return Response(
        {"status": 500, "type": PROBLEM_BASE + "internal", "title": "internal error", "code": "internal",
         "detail": f"The node could not complete the request; quote request id {request_id} to its operator",
         "request_id": request_id},
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        media_type="application/problem+json",
    )


def problem_details_plugin() -> ProblemDetailsPlugin:
    domain: dict[Any, Any] = {cls: to_problem for cls in STATUS}
    domain[HTTPException] = http_to_problem
    return ProblemDetailsPlugin(ProblemDetailsConfig(exception_to_problem_detail_map=domain))
