"""`ScorerSettings`: which scorer to load and how it reads responses, the one group of settings that `score`,
`search` and `serve` share. Their configs extend it, so its fields stay top-level flags and config-file keys."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from ..core.config import field
from ..models.settings import DeviceSettings

FormatName = Literal["auto", "implicit", "math-shepherd", "rlhflow", "token-classification", "orm"]


@dataclass(kw_only=True)
class ScorerSettings(DeviceSettings):
    prm: str = field(help="the scorer: a PRM trained here (an implicit PRM, or a step-tag model from --objective "
                          "step_bce|orm), a released PRM or ORM (see --format), any causal LM, or an adapter; "
                          "search also takes http://HOST:PORT of `implicit-prm serve`")
    format: FormatName = field(
        "auto", help="how the checkpoint scores: implicit (beta * log-ratio; EurusPRM), math-shepherd (P(+) at 'ки'),"
                     " rlhflow (P(+) at each assistant turn), token-classification (Qwen2.5-Math-PRM, <extra_0>), "
                     "orm (a sequence-classification reward model); auto reads it from the checkpoint and refuses "
                     "when it cannot tell")
    trust_remote_code: bool = field(False, help="run modeling code the checkpoint ships (Qwen2.5-Math-PRM)")
    step_tag: Optional[str] = field(None, help="the token after each step (default: math-shepherd 'ки', "
                                               "token-classification '<extra_0>')")
    plus_token: str = field("+", help="math-shepherd, rlhflow: the token whose probability is a step's score")
    minus_token: str = field("-", help="math-shepherd, rlhflow: the token against it")
    ref: Optional[str] = field(None, help="reference model (default: from the PRM's implicit_prm.json; for a LoRA "
                                          "PRM, its base with the adapter disabled)")
    reference_free: bool = field(False, help="reward = beta * log pi_theta, no reference model")
    beta: Optional[float] = field(None, help="reward scale (default: the PRM's training beta, else 0.05)")
    template: Literal["auto", "chat", "plain"] = field("auto", help="prompt format (default: as the PRM was trained)")
    system_prompt: Optional[str] = field(None, help="system message for the chat template (default: as the PRM "
                                                    "was trained)")
    # compatibility: the aliases accept the flags and keys renamed before 0.1 (--dtype, --ref-cache); remove in 0.3
    precision: Literal["auto", "bf16", "fp32"] = field("auto", help="bf16 autocast where fast, else fp32",
                                                      aliases=("dtype",))
    logprob_cache: str = field("", help="implicit PRMs: log-prob cache file ('' = default, 'none' = off)",
                               aliases=("ref_cache",))

    @property
    def implicit_only(self) -> bool:
        """Whether a setting that only an implicit PRM reads was given (--ref, --reference-free, --beta)."""
        return bool(self.ref) or self.reference_free or self.beta is not None
