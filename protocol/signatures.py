"""Who must have signed an instruction: HIS's Ed25519 keys and the `require_his_signature` switch.

His-interface 1.1 B: HIS may hold an Ed25519 key pair and sign instructions (`his_sig`, the same
construction as a result's `sig`: Ed25519 over AAD || CT). The bridge and the POS hold HIS's public
keys (more than one while HIS rotates). With `required` on (for the hospital) or for a terminal in
`required_terminals`, an instruction without a valid `his_sig` is refused with `auth_failed`;
otherwise `his_sig` is optional, but one that is present and does not verify is always refused.
Pure data and rules; the envelope pipeline (protocol.envelope) applies them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocol.signing import PUBLIC_KEY_SIZE


@dataclass(frozen=True, slots=True)
class HisSignaturePolicy:
    public_keys: tuple[bytes, ...] = ()
    required: bool = False  # for every terminal (the hospital's switch)
    required_terminals: frozenset[str] = field(default_factory=frozenset)  # per terminal

    def __post_init__(self) -> None:
        if any(len(k) != PUBLIC_KEY_SIZE for k in self.public_keys):
            raise ValueError(f"HIS public keys are {PUBLIC_KEY_SIZE}-byte Ed25519 keys")
        if (self.required or self.required_terminals) and not self.public_keys:
            raise ValueError("require_his_signature is on but no HIS public key is configured")

    def required_for(self, terminal_id: str) -> bool:
        return self.required or terminal_id in self.required_terminals


NO_HIS_SIGNATURE = HisSignaturePolicy()
