"""Step scorers for search: incremental implicit scoring over KV caches, and whole-text re-scoring (any format).

Incremental (Yuan et al. 2024's reward, arXiv 2412.01981): a prefix's q-value is a running sum of token
log-ratios, so extending a partial solution by one step needs only that step's tokens through the PRM and the
reference, continued from their cached keys and values:
  r_step = beta * sum_{t in step} (log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)),   q_new = q_parent + r_step
A node keeps, per model, the keys/values of its sequence and the log-prob of each response token. A child is
computed from its parent's cache without changing it, so beams that share a prefix share its cache, and a dropped
beam's cache is freed with its node. All proposals of a round run as one batch per model: prefixes left-padded
(masked, each row at its true positions), new tokens right-padded.

Token boundaries at step joins: a step given as text is encoded as `score` encodes the partial response (steps
joined by the separator, a trailing separator while it goes on: one tokenization of the whole response, tokens
assigned to steps by their first character), and only the tokens after the longest prefix shared with the parent's
ids are run, continuing from the cache cut there (the last shared token is run again: its hidden state predicts
the first new token). Where the join re-tokenizes the parent's last tokens, those are recomputed, so the rewards
are `score`'s on that text. A step given as token ids (an LM policy sharing the PRM's tokenizer) is appended as
generated; then the rewards are those of one pass over the same ids, and may differ from re-tokenizing the decoded
text (`benchmarks/search_incremental.py` reports by how much).

Whole-text (`WholeTextScorer`): each child's full partial solution (with its trailing separator while it goes on)
is scored from scratch by any local scorer (load_scorer: every format), or by a reward server (`RemoteTextScorer`).
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..core.precision import autocast_context, weights_dtype
from ..data.formats import Sample
from ..flops.ledger import Ledger
from ..models.loading import load_model
from ..models.logprobs import chunked_token_logprobs
from ..scoring.implicit import ImplicitPRM, rewards_record
from ..scoring.protocol import LocalScorer
from ..scoring.reference import adapter_disabled
from ..scoring.remote import RemoteScorer
from ..steps.encoding import Encoded
from .strategies import Node, Proposal

LEDGER_KINDS = ("search_prm", "search_reference")


@dataclass
class PrefixState:
    """What the scorer keeps for a node: each model's cache over prompt + response, the response's token ids,
    their steps, and each model's log-prob of every response token."""

    kv: list  # per model (PRM, then the reference if any): per layer (keys, values), each (1, heads, T, d)
    response_ids: list[int]
    token_steps: list[int]
    logps: list[np.ndarray]  # per model: (len(response_ids),)
    text: str  # the response so far (with its trailing separator while it goes on)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class IncrementalImplicitScorer:
    """Extend nodes step by step with an ImplicitPRM's models (prm.model.lm and its reference)."""

    def __init__(self, prm: ImplicitPRM, separator: str = "\n\n"):
        self.prm, self.tok, self.sep, self.beta = prm, prm.tok, separator, prm.beta
        self.flops_shape, self.lora = prm.flops_shape, prm.lora
        self.models = [prm.model.lm]
        if prm.ref is not None:
            self.models.append(prm.model.lm if prm.ref_in_memory else load_model(
                prm.ref, weights_dtype(prm.device, prm.precision), attn_implementation=prm.attn_implementation, device=prm.device
            ).to(prm.device).eval())
        self.prm_tokens = 0  # tokens run through the PRM and the reference, each counted once per model

    def _ctx(self, m: int):
        if m == 1 and self.models[1] is self.models[0]:
            return adapter_disabled(self.models[0])  # the LoRA PRM's base weights are its reference
        return contextlib.nullcontext()

    @torch.no_grad()
    def _run(self, m: int, rows: list[list[int]], kvs: list | None,
             ledger: Ledger | None) -> list[tuple[list, np.ndarray]]:
        """Run model m on token rows, each after its own cached prefix (`kvs[i]`: per layer (keys, values) of
        shape (1, heads, T_i, d)), or from scratch (kvs None). One batch: prefixes left-padded to the longest
        (masked, with each row's true positions), rows right-padded. Per row: its new cache (prefix + row) and the
        log-probs of its tokens after the first (each predicted by the token before)."""
        from transformers import DynamicCache

        lm, dev, B = self.models[m], self.prm.device, len(rows)
        lengths = [len(r) for r in rows]
        L = max(lengths)
        pad = self.tok.pad_token_id
        ids = torch.tensor([r + [pad] * (L - len(r)) for r in rows], device=dev)  # (B, L)
        pasts = [0] * B if kvs is None else [kv[0][0].shape[2] for kv in kvs]
        T = max(pasts)
        cache = None
        if kvs is not None:
            layers = []
            for j in range(len(kvs[0])):  # left-pad every row's prefix to T
                ks, vs = [], []
                for kv, t in zip(kvs, pasts):
                    k, v = kv[j]
                    fill = k.new_zeros(k.shape[0], k.shape[1], T - t, k.shape[3])
                    ks.append(torch.cat([fill, k], 2))
                    vs.append(torch.cat([fill, v], 2))
                layers.append((torch.cat(ks), torch.cat(vs)))  # (B, heads, T, d)
            cache = DynamicCache(ddp_cache_data=layers)
        mask = torch.tensor([[0] * (T - t) + [1] * (t + n) + [0] * (L - n) for t, n in zip(pasts, lengths)],
                            device=dev)  # (B, T + L)
        positions = torch.tensor([[t + i for i in range(L)] for t in pasts], device=dev)  # (B, L)
        with self._ctx(m), autocast_context(dev, self.prm.precision):
            decoder = lm.get_decoder()
            key = "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"
            out = decoder(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **{key: cache})
            head = self.prm.model
            logps = chunked_token_logprobs(out.last_hidden_state[:, :-1], lm.get_output_embeddings(), ids[:, 1:],
                                           head.chunk, head.softcap, head.scale)  # (B, L-1)
        new_cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values  # transformers 5.x
        layers = [(layer.keys, layer.values) for layer in new_cache.layers]
        self.prm_tokens += sum(lengths)
        if ledger is not None:
            ledger.add_continuation(zip(pasts, lengths), LEDGER_KINDS[m], "scoring")
        return [([(k[i:i + 1, :, T - t:T + n].clone(), v[i:i + 1, :, T - t:T + n].clone()) for k, v in layers],
                 logps[i, :n - 1].double().cpu().numpy()) for i, (t, n) in enumerate(zip(pasts, lengths))]

    def root(self, prompt: str, ledger: Ledger | None = None) -> PrefixState:
        ids = self.prm.encoder.prompt_ids(prompt)
        kv = [self._run(m, [list(ids)], None, ledger)[0][0] for m in range(len(self.models))]
        return PrefixState(kv, [], [], [np.zeros(0)] * len(self.models), "")

    def _encode(self, prompt: str, parent: Node, prop: Proposal) -> tuple[list[int], list[int], str]:
        """(response ids, their steps, text) of the parent's response with the proposed step appended."""
        st: PrefixState = parent.scorer_state
        k = len(parent.steps)
        tail = "" if prop.done else self.sep
        if prop.ids is not None:
            return st.response_ids + list(prop.ids), st.token_steps + [k] * len(prop.ids), st.text + prop.text + tail
        steps = parent.steps + [prop.text]
        text = self.sep.join(steps) + tail
        spans, pos = [], 0
        for i, step in enumerate(steps):
            end = len(text) if i == len(steps) - 1 else pos + len(step) + len(self.sep)
            spans.append((pos, end))
            pos = end
        enc = self.prm.encoder.encode(prompt, text, spans)
        return enc.response_ids, enc.token_steps, text

    def extend(self, prompt: str, parents: Sequence[Node], proposals: Sequence[Proposal],
               ledger: Ledger | None = None) -> list[tuple[list, object]]:
        """All proposals as one batch per model, each continuing its parent's cache from its own reused prefix."""
        p_ids = self.prm.encoder.prompt_ids(prompt)
        P = len(p_ids)
        rows, kvs, keeps, encoded = [], [[] for _ in self.models], [], []
        for parent, prop in zip(parents, proposals):
            st: PrefixState = parent.scorer_state
            resp, steps, text = self._encode(prompt, parent, prop)
            keep = _common_prefix(st.response_ids, resp)  # response tokens reused
            feed = P + keep - 1  # run from the last reused token: its hidden state predicts the first new one
            rows.append((p_ids + resp)[feed:])
            for m in range(len(self.models)):
                kvs[m].append([(k[:, :, :feed], v[:, :, :feed]) for k, v in st.kv[m]])
            keeps.append(keep)
            encoded.append((resp, steps, text))
        per_model = [self._run(m, rows, kvs[m], ledger) for m in range(len(self.models))]
        out = []
        for j, (parent, (resp, steps, text)) in enumerate(zip(parents, encoded)):
            st = parent.scorer_state
            kv = [per_model[m][j][0] for m in range(len(self.models))]
            logps = [np.concatenate([st.logps[m][:keeps[j]], per_model[m][j][1]]) for m in range(len(self.models))]
            enc = Encoded(p_ids, resp, steps, len(parent.steps) + 1)
            rec = rewards_record(enc, logps[0], logps[1] if len(logps) > 1 else None, self.beta, False)
            out.append((rec["step_rewards"], PrefixState(kv, resp, steps, logps, text)))
        return out


class WholeTextScorer:
    """Re-score each child's whole partial solution (steps so far + the new one) with any local scorer; no state."""

    def __init__(self, scorer: LocalScorer, separator: str = "\n\n"):
        self.scorer, self.sep = scorer, separator
        self.flops_shape, self.lora = scorer.flops_shape, scorer.lora
        self.prm_tokens = 0

    def root(self, prompt: str, ledger: Ledger | None = None) -> None:
        return None

    def extend(self, prompt: str, parents: Sequence[Node], proposals: Sequence[Proposal],
               ledger: Ledger | None = None) -> list[tuple[list, None]]:
        encs = self.scorer.encode(partial_solutions(prompt, parents, proposals, self.sep), "steps", None, self.sep)
        done = [e for e in encs if e is not None]  # responses to one prompt share its pass (prompt sharing)
        P = len(done[0].prompt_ids) if done else 0
        models = LEDGER_KINDS[:2 if self.scorer.reference is not None else 1]
        self.prm_tokens += (P + sum(len(e.response_ids) for e in done)) * len(models)
        if ledger is not None and done:
            for kind in models:
                ledger.add_forward(P, kind, "scoring")
                ledger.add_continuation(((P, len(e.response_ids)) for e in done), kind, "scoring")
        return [(list(r["step_rewards"]), None) for r in self.scorer.score_encoded(encs)]


class RemoteTextScorer:
    """Re-score each child's whole partial solution on a reward server (`implicit-prm serve`); its FLOPs and
    tokens are the server's, unknown here."""

    flops_shape, lora, prm_tokens = None, False, 0

    def __init__(self, scorer: RemoteScorer, separator: str = "\n\n"):
        self.scorer, self.sep = scorer, separator

    def root(self, prompt: str, ledger: Ledger | None = None) -> None:
        return None

    def extend(self, prompt: str, parents: Sequence[Node], proposals: Sequence[Proposal],
               ledger: Ledger | None = None) -> list[tuple[list, None]]:
        recs = self.scorer.score_samples(partial_solutions(prompt, parents, proposals, self.sep))
        return [(list(r["step_rewards"]), None) for r in recs]


def partial_solutions(prompt: str, parents: Sequence[Node], proposals: Sequence[Proposal], sep: str) -> list[Sample]:
    """Each proposal appended to its parent as a Sample of steps; an unfinished solution keeps its trailing
    separator, as incremental scoring does."""
    samples = []
    for p, q in zip(parents, proposals):
        steps = p.steps + [q.text + ("" if q.done else sep)]
        samples.append(Sample.api(prompt, sep.join(steps), steps, ("<search>", 0)))
    return samples
