"""The `ImplicitPRM` Python API: load a trained PRM and its reference, score encoded or raw responses step by step."""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
import torch

from .. import rewards as R
from ..core.distributed import ProcessGroup, SingleProcess, default_device, is_main_rank
from ..core.errors import UserError
from ..core.precision import resolve_precision, weights_dtype
from ..flops.counting import ModelShape
from ..losses import DEFAULT_BETA
from ..models.loading import adapter_base, check_same_tokenizer, fingerprint, load_model, load_tokenizer, resolve
from ..models.logprobs import TokenLogProbs
from ..models.metadata import METADATA_FILE, PRMMetadata, read_metadata
from ..steps.encoding import Encoded, Encoder, encode_samples
from .cache import open_cache
from .forward import response_logprobs
from .protocol import LocalScorer
from .reference import RefTable, reference_logprobs
from .schema import implicit_schema


def rewards_record(enc: Encoded, policy: np.ndarray, ref: np.ndarray | None, beta: float,
                   with_tokens: bool) -> dict:
    """step_rewards, q_values, scores (and optionally token_rewards) of one response."""
    as_t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    tok_r = R.token_rewards(as_t(policy), None if ref is None else as_t(ref), beta)  # (T,)
    step_r = R.step_rewards(tok_r, torch.tensor(enc.token_steps, dtype=torch.long), enc.n_steps)  # (n_steps,)
    rec = {"step_rewards": step_r.tolist(), "q_values": R.q_values(step_r).tolist(),
           "scores": R.aggregate(step_r.tolist()), "reward_schema": implicit_schema(beta, ref is None)}
    if with_tokens:
        rec["token_rewards"] = tok_r.tolist()
    if enc.truncated:
        rec["truncated"] = True
    return rec


def reference_spec(prm: str, ref: str | None, reference_free: bool, meta: PRMMetadata | None
                   ) -> tuple[str | None, bool]:
    """(reference model spec, whether the PRM's own base weights with the adapter disabled serve as reference)."""
    if reference_free:
        return None, False
    base = adapter_base(resolve(prm))
    ref = ref or (meta.reference_model if meta else None) or base
    if ref is None:
        raise UserError(f"'{prm}' has no {METADATA_FILE} naming its reference model: pass --ref MODEL, "
                        "or --reference-free to score with beta * log pi_theta")
    return ref, base is not None and ref in (base, resolve(base))


# compatibility: from_pretrained's former keywords dtype=, ref_cache=, max_tokens= (DeprecationWarning since
# 0.1); remove in 0.3
RENAMED = {"dtype": "precision", "ref_cache": "logprob_cache", "max_tokens": "batch_tokens"}  # former -> current


class ImplicitPRM(LocalScorer):
    """Python API: `ImplicitPRM.from_pretrained(dir).score(prompt, steps)` -> step rewards, q-values, scores."""

    format = "implicit"

    def __init__(self, model: TokenLogProbs, tokenizer, ref: str | None, ref_in_memory: bool, beta: float,
                 template: str = "auto", precision: str = "auto", max_length: int = 4096, logprob_cache: str = "",
                 device: str | torch.device = "cpu", system_prompt: str | None = None, batch_tokens: int = 8192,
                 overlong: str = "error", expected_ref_fingerprint: str = "", name: str = "",
                 attn_implementation: str | None = "auto"):
        self.model, self.tok, self.beta, self.name = model, tokenizer, beta, name
        self.attn_implementation = attn_implementation  # for the reference, when it is loaded
        self.ref, self.ref_in_memory, self.logprob_cache = ref, ref_in_memory, logprob_cache
        self.device = torch.device(device)
        self.precision = resolve_precision(self.device, precision)
        self.template, self.system_prompt = template, system_prompt
        self.encoder = Encoder(tokenizer, template, max_length, overlong, system_prompt)
        self.batch_tokens = batch_tokens  # padded tokens per batch
        self.expected_ref_fingerprint = expected_ref_fingerprint.split(":")[0]  # the reference of training, if known
        self._own_key: str | None = None  # fingerprint of the PRM as it computes, for cached log-probs

    @classmethod
    def from_pretrained(cls, prm: str, ref: str | None = None, reference_free: bool = False,
                        beta: float | None = None, device: str | None = None, template: str = "auto",
                        system_prompt: str | None = None, **kw) -> "ImplicitPRM":
        """Load a PRM. Unset settings (beta None, template 'auto', system_prompt None, ref None) come from its
        metadata when it has some (a PRM trained here), else from defaults. Former keyword names (dtype,
        ref_cache, max_tokens) are still accepted."""
        for old, new in RENAMED.items():
            if old in kw:
                warnings.warn(f"ImplicitPRM: '{old}' is now '{new}'", DeprecationWarning, stacklevel=2)
                kw[new] = kw.pop(old)
        meta = read_metadata(resolve(prm))
        if meta is not None and meta.kind != "implicit":
            raise UserError(f"'{prm}' is a {meta.kind} scorer ({meta.objective}), not an implicit PRM: load it with "
                            "implicit_prm.load_scorer (which `implicit-prm score` uses)")
        ref_spec, in_memory = reference_spec(prm, ref, reference_free, meta)
        tok = load_tokenizer(prm)
        if ref_spec and not in_memory:
            check_same_tokenizer(tok, load_tokenizer(ref_spec), prm, ref_spec)
        device = device or default_device()
        dtype = weights_dtype(torch.device(device), kw.get("precision", "auto"))
        kw.setdefault("attn_implementation", "auto")  # eager on a CPU (models/loading.py: attention_kernel)
        model = TokenLogProbs(load_model(prm, dtype, attn_implementation=kw["attn_implementation"], device=device))
        model = model.to(device).eval()
        if meta is not None:
            template = meta.template if template == "auto" else template
            system_prompt = meta.system_prompt if system_prompt is None else system_prompt
            beta = meta.beta if beta is None else beta
            if ref_spec == meta.reference_model:
                kw.setdefault("expected_ref_fingerprint", meta.reference_fingerprint)
        out = cls(model, tok, ref_spec, in_memory, DEFAULT_BETA if beta is None else beta, template=template,
                  system_prompt=system_prompt, device=device, name=prm, **kw)
        if meta is not None and is_main_rank():
            print(f"[implicit-prm] PRM {prm}: {meta.describe()}; scoring in {out.precision}"
                  + (f" (note: not the precision it was trained in, {meta.precision})"
                     if meta.precision and meta.precision != out.precision else ""), flush=True)
        return out

    @property
    def schema(self) -> dict:
        return implicit_schema(self.beta, self.ref is None)

    @property
    def reference(self) -> str | None:
        return self.ref

    @property
    def lora(self) -> bool:
        return hasattr(self.model.lm, "peft_config")

    @property
    def flops_shape(self) -> ModelShape:
        return ModelShape.from_model(self.model.lm, self.name)

    def resolved_settings(self) -> dict:
        return {"beta": self.beta, "template": self.template, "ref": self.ref, "system_prompt": self.system_prompt}

    @property
    def own_key(self) -> str:
        """Fingerprint (adapters included) and precision of the PRM as it computes; memoized."""
        if self._own_key is None:
            self._own_key = f"{fingerprint(self.model.lm, base_only=False)}:{self.precision}"
        return self._own_key

    def reference_table(self, encs: Sequence[Encoded], acc: ProcessGroup, show: bool) -> RefTable | None:
        """The reference's log-probs of `encs` (cached); warns when the reference is not the one of training."""
        if self.ref is None:
            return None
        table = reference_logprobs(self.ref, self.model if self.ref_in_memory else None, encs, self.tok.pad_token_id,
                                   acc, self.precision, self.logprob_cache, self.batch_tokens, show,
                                   self.attn_implementation)
        got = table.fingerprint
        if self.expected_ref_fingerprint and got != self.expected_ref_fingerprint and acc.is_main_process:
            print(f"[implicit-prm] warning: the reference '{self.ref}' has other weights (fingerprint {got}) than "
                  f"the PRM was trained against ({self.expected_ref_fingerprint}); its rewards are not the trained "
                  "ones", flush=True)
        return table

    def score_encoded(self, encs: Sequence[Encoded], acc: ProcessGroup | None = None, show: bool = False,
                      token_rewards: bool = False, on_record: Callable[[int, dict], None] | None = None) -> list[dict]:
        """Reference pass (cached), then the PRM pass by length buckets; `on_record(i, rec)` streams results.

        Under several processes (`acc`), the reference pass is shared and each process scores its share of the PRM
        pass's batches: the returned list holds None where another process scored the response."""
        acc = acc or SingleProcess(self.device)
        table = self.reference_table(encs, acc, show)
        out: list[dict | None] = [None] * len(encs)

        def finished(idx: list[int], arrays: list[np.ndarray]) -> None:
            for i, a in zip(idx, arrays):
                out[i] = rewards_record(encs[i], a, None if table is None else table.logps(encs[i]), self.beta,
                                        token_rewards)
                if on_record is not None:
                    on_record(i, out[i])

        self._own_logprobs(encs, acc, show, finished)
        return out  # type: ignore[return-value]

    def _own_logprobs(self, encs: Sequence[Encoded], acc: ProcessGroup, show: bool,
                      finished: Callable[[list[int], list[np.ndarray]], None]) -> None:
        """The PRM's log-probs of each response, passed to `finished` as they come: from the cache where present
        (re-scoring the same responses with this PRM needs no forward pass), identical (prompt, response) pairs
        computed once, the rest computed by batches and cached by the main process."""
        own = open_cache(self.logprob_cache, self.own_key)
        keys = own.keys(encs) if own else [None] * len(encs)
        cached = own.get(keys) if own else {}
        if own:
            own.close()
        hit = [i for i, k in enumerate(keys) if k in cached]
        if hit:
            finished(hit, [cached[keys[i]] for i in hit])
        copies: dict[tuple, list[int]] = {}
        for i, k in enumerate(keys):
            if k not in cached:
                copies.setdefault((tuple(encs[i].prompt_ids), tuple(encs[i].response_ids)), []).append(i)
        groups = list(copies.values())
        computed: list[tuple[str, np.ndarray]] = []

        def on_batch(idx: list[int], arrays: list[np.ndarray]) -> None:
            finished([i for j in idx for i in groups[j]], [a for j, a in zip(idx, arrays) for _ in groups[j]])
            computed.extend((keys[groups[j][0]], a) for j, a in zip(idx, arrays) if keys[groups[j][0]] is not None)

        response_logprobs(self.model, [encs[g[0]] for g in groups], self.tok.pad_token_id, self.device,
                          self.precision, self.batch_tokens, desc="PRM pass", show=show, on_batch=on_batch,
                          shard=(acc.process_index, acc.num_processes))
        if computed and acc.is_main_process:  # one writer per run
            with open_cache(self.logprob_cache, self.own_key) as own:
                own.put(computed)

    def encode(self, samples, split: str = "auto", step_regex: str | None = None,
               separator: str = "\n\n") -> list[Encoded | None]:
        """Encode data.Samples for scoring (step spans of each response)."""
        return encode_samples(self.encoder, samples, split, step_regex, separator)
