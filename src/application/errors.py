"""Application errors: raised in the core, mapped to HTTP once in the entrypoints.

Each carries a stable machine `code` that clients may rely on."""


class ApplicationError(Exception):
    code = "error"

    def __init__(self, detail: str = "", *, code: str | None = None) -> None:
        super().__init__(detail or self.__class__.__doc__ or self.code)
        self.detail = detail or (self.__class__.__doc__ or "").strip()
        if code is not None:
            self.code = code


class InvalidInput(ApplicationError):
    """The request is not acceptable."""

    code = "invalid_input"

    def __init__(self, detail: str = "", *, code: str | None = None, field: str | None = None):
        super().__init__(detail, code=code)
        self.field = field


class NotAuthenticated(ApplicationError):
    """Authentication is required or has failed."""

    code = "not_authenticated"


class Forbidden(ApplicationError):
    """You are not allowed to do this."""

    code = "forbidden"


class NotFound(ApplicationError):
    """No such resource."""

    code = "not_found"


class Conflict(ApplicationError):
    """The request conflicts with the current state."""

    code = "conflict"


class RateLimited(ApplicationError):
    """Too many requests; try again later."""

    code = "rate_limited"

    def __init__(self, retry_after: float, detail: str = "") -> None:
        super().__init__(detail or "Too many requests; try again later.")
        self.retry_after = retry_after


class DependencyUnavailable(ApplicationError):
    """A dependency of the service is unavailable."""

    code = "dependency_unavailable"

    def __init__(self, detail: str = "", *, code: str | None = None, retry_after: float = 5.0) -> None:
        super().__init__(detail, code=code)
        # Sent as Retry-After: a dependency that drops out is usually back within seconds.
        self.retry_after = retry_after
