"""What the Hetzner provider raises beyond the port's two errors.

Each is an EgressProviderUnavailable: to the ledger they all mean "nothing changed, the address
stays where it is, try again later" (a teardown stays `draining`), while the message says what
an operator must fix (a token, the egress host's power state, an IP someone else assigned)."""

from application.ports.egress_provider import EgressProviderUnavailable


class HetznerApiError(EgressProviderUnavailable):
    """Hetzner refused the call with a 4xx other than 429; retrying the same call will not help."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class HetznerNoAnswer(EgressProviderUnavailable):
    """A call that must not be repeated blindly (a create) got no answer or a 5xx: it may or may
    not have been carried out."""


class NotOurPrimaryIp(EgressProviderUnavailable):
    """The IP is not labelled as Bulwark's, or not the one the ledger names: Bulwark leaves it be
    (it could be the egress host's own address)."""
