"""The egress gateway's one decision, asked by Squid's helper for every proxy login it has not
cached: is this credential good, and does the ledger still bind its address to its user? The
ledger is read on every call, so a detach takes effect on the very next admission."""

from dataclasses import dataclass

from application.ports.clock import Clock
from application.ports.egress_bindings import EgressBindingLookup
from application.ports.egress_credentials import EgressCredentialRefused, EgressCredentialVerifier
from domain.egress_credentials import EgressRefusal, admission, parse_proxy_username


@dataclass(frozen=True)
class EgressAdmitted:
    address: str  # the outgoing address Squid must use (the helper's note)


@dataclass(frozen=True)
class EgressRefused:
    reason: EgressRefusal


@dataclass
class AdmitEgress:
    verifier: EgressCredentialVerifier
    bindings: EgressBindingLookup
    clock: Clock

    async def __call__(self, username: str, credential: str) -> EgressAdmitted | EgressRefused:
        if parse_proxy_username(username) is None:
            return EgressRefused(EgressRefusal.MALFORMED)
        try:
            verified = self.verifier.verify(credential)
        except EgressCredentialRefused as refused:
            return EgressRefused(refused.reason)
        # Checked before the ledger is asked: a forged or stale credential costs no database read.
        early = admission(verified, username, credential, verified.address, self.clock.now())
        if early is not None:
            return EgressRefused(early)
        live = await self.bindings.live_address(verified.user_id)
        refusal = admission(verified, username, credential, live, self.clock.now())
        if refusal is not None:
            return EgressRefused(refusal)
        return EgressAdmitted(verified.address)
