"""The exception tree: every failure the SDK reports is a ``SigmaError``.

::

    SigmaError
     ├── APIConnectionError            the request did not get an HTTP answer
     │    └── APITimeoutError          ... because it ran out of time
     ├── APIStatusError                the server answered with a 4xx/5xx status
     │    ├── BadRequestError          400
     │    ├── AuthenticationError      401
     │    ├── PermissionDeniedError    403
     │    ├── NotFoundError            404
     │    ├── ConflictError            409
     │    ├── UnprocessableEntityError 422
     │    ├── RateLimitError           429 (``retry_after`` in seconds, when sent)
     │    └── ServerError              5xx
     ├── ResponseDecodeError           a 2xx answer whose body is not the documented shape
     ├── OutcomeUnknownError           a bulk item cut off by cancellation: it may have taken effect
     └── WatchError                    a watch that cannot go on (silence past ``max_silence``, ...)

Bad arguments are not ``SigmaError``: they raise ``ValueError`` before any request is sent.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "NotFoundError",
    "OutcomeUnknownError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseDecodeError",
    "ServerError",
    "SigmaError",
    "UnprocessableEntityError",
    "WatchError",
    "sole_exception",
    "status_error_class",
]


class SigmaError(Exception):
    """Base class of every error raised by sigma-async."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Subclasses take keyword-only fields that Exception's default pickling would drop; keep them, so that
        # errors cross process pools and copy.copy intact.
        return (_restore, (type(self), self.args, self.__dict__.copy()))


class APIConnectionError(SigmaError):
    """The request got no HTTP answer: refused, reset, DNS failure, TLS failure."""

    def __init__(
        self, message: str, *, method: str | None = None, path: str | None = None, sent: bool = True
    ) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path
        #: False when the request provably never left (connection refused): safe to retry even a create.
        self.sent = sent


class APITimeoutError(APIConnectionError):
    """The request did not complete within the client's timeout."""


class APIStatusError(SigmaError):
    """The server answered with an error status.

    ``message`` is the server's own message when the body carries one, ``body`` the decoded body
    (or a short text snippet, secrets redacted), ``request_id`` the ``X-Request-Id`` response header when
    sent, ``retry_after`` the seconds of a ``Retry-After`` header (429 and 503 send one).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        request_id: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.retry_after = retry_after
        self.status_code = status_code
        self.body = body
        self.request_id = request_id
        self.method = method
        self.path = path
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.method} {self.path}: " if self.method and self.path else ""
        rid = f" (request id {self.request_id})" if self.request_id else ""
        return f"{where}HTTP {self.status_code}: {self.message}{rid}"


class BadRequestError(APIStatusError):
    """400: the server rejected the request as malformed."""


class AuthenticationError(APIStatusError):
    """401: the username or secret key is wrong, or missing."""


class PermissionDeniedError(APIStatusError):
    """403: the credentials are valid but not for this app or operation."""


class NotFoundError(APIStatusError):
    """404: no such channel, session or route."""


class ConflictError(APIStatusError):
    """409: the resource is not in a state that allows this operation."""


class UnprocessableEntityError(APIStatusError):
    """422: the body was understood but its values are invalid."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` is the server's wait in seconds, when it sent one."""


class ServerError(APIStatusError):
    """5xx: the server failed."""


class ResponseDecodeError(SigmaError):
    """A successful answer whose body is not valid JSON of the documented shape."""

    def __init__(self, message: str, *, status_code: int | None = None, snippet: str = "") -> None:
        self.status_code = status_code
        self.snippet = snippet
        super().__init__(message)


class OutcomeUnknownError(SigmaError):
    """A bulk call was cancelled while this item was in flight: its request may have reached the server and
    taken effect (a channel may exist), or not. ``on_result`` gets one for each such item, so that nothing the
    server may have done goes unreported; check the server before repeating the item."""


class WatchError(SigmaError):
    """A watch cannot go on: the server stayed unreachable past ``max_silence``, or the session ended first."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status: int) -> type[APIStatusError]:
    """The ``APIStatusError`` subclass for an HTTP status (``ServerError`` for every 5xx)."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, APIStatusError)


def _restore(cls: type[SigmaError], args: tuple[Any, ...], state: dict[str, Any]) -> SigmaError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


def sole_exception(exc: BaseException) -> BaseException:
    """The error inside an exception group that holds just one (task groups wrap even a lone failure)."""
    # Duck-typed: ``BaseExceptionGroup`` is a builtin only from Python 3.11.
    while isinstance(inner := getattr(exc, "exceptions", None), tuple) and len(inner) == 1:
        exc = inner[0]
    return exc
