"""Step proposers for search: any Hugging Face causal LM (generate up to the step separator), and the built-in
simulated solver (data/solver.py), which proposes steps with the data generator's own error model, so that the
value of search can be measured with exact truth while the PRM is a real LM."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

from ..core.errors import UserError
from ..data import solver, solver_text
from ..data.chains import parse_prompt
from ..data.solver import initial_state, make_profile
from ..flops.counting import SMOLLM2_135M, ModelShape
from ..flops.ledger import Ledger
from ..models.chat import chat_text
from .strategies import Proposal

LEDGER_KIND = "search_generation"


@dataclass(frozen=True)
class SolverState:
    state: object  # data.solver.State
    surface_seed: str | None  # the wording of this line of steps (drawn at its first step)
    tokens: int = 0  # prompt + steps so far, in `tok`'s tokens


class SolverPolicy:
    """Next steps of the built-in solver for built-in prompts (data.chains.parse_prompt). Each proposal draws its
    error from its own seeded stream; a solution's wording follows the surface seed of its first step.
    `tok` counts the tokens of each step (the budget a real policy would spend). A ledger (flops.Ledger) given to
    root and propose counts them as SmolLM2-135M keeping each beam's KV cache would run them: the chat-formatted
    prompt prefilled once, each step generated after its prefix."""

    simulated = True
    flops_shape = ModelShape.from_config(SMOLLM2_135M)

    def __init__(self, tok, seed: int = 0, rate_scale: float = 1.0, separator: str = "\n\n"):
        self.tok, self.seed, self.rate_scale, self.sep = tok, seed, rate_scale, separator
        self._problems: dict[str, tuple] = {}

    def _problem(self, prompt: str):
        if prompt not in self._problems:

            try:
                problem = parse_prompt(prompt)
            except ValueError:

                raise UserError(f"--policy solver proposes steps for built-in problems only, and {prompt[:60]!r} is "
                                "not one; use --policy MODEL (a causal LM)") from None
            self._problems[prompt] = (problem, make_profile(problem, self.seed, self.rate_scale))
        return self._problems[prompt]

    def root(self, prompt: str, ledger: Ledger | None = None) -> SolverState:

        n = len(self.tok(chat_text(self.tok, prompt, None), add_special_tokens=False)["input_ids"])
        if ledger is not None:
            ledger.add_generation(n, 0, True, LEDGER_KIND, "scoring")
        return SolverState(initial_state(self._problem(prompt)[0]), None, n)

    def propose(self, prompt: str, states: Sequence[SolverState], k: int, seed: int,
                ledger: Ledger | None = None) -> list[list[Proposal]]:

        problem, profile = self._problem(prompt)
        out = []
        for i, st in enumerate(states):
            props = []
            for j in range(k):
                rng = random.Random(f"search:{seed}:{i}:{j}")
                surface = st.surface_seed or f"search:{seed}:{i}:{j}"
                style = solver_text.draw_style(surface)
                s = st.state
                (op, b, c), new = solver.step(problem, profile, s, rng)
                text = solver_text.write_step(style, surface, s.pos, s.value, op, b, c)
                done = new.next_op >= len(problem.ops)
                if done:
                    text += " " + solver_text.write_final(style, new.value)
                n = len(self.tok.encode(text + ("" if done else self.sep), add_special_tokens=False))
                if ledger is not None:
                    ledger.add_generation(st.tokens, n, False, LEDGER_KIND, "scoring")
                props.append(Proposal(text, done, SolverState(new, surface, st.tokens + n), n))
            out.append(props)
        return out


class SeparatorStop:
    """A StoppingCriteria: a row stops once its generated text holds the separator. Only rows whose last token
    contains the separator's last character are decoded (the tokens that can hold it are found once), which keeps
    it cheap next to transformers' general stop_strings."""

    def __init__(self, tok, separator: str, start: int):
        self.tok, self.sep, self.start = tok, separator, start
        last = separator[-1]
        self.candidates = torch.tensor([last in tok.decode([i]) for i in range(len(tok))])

    def __call__(self, input_ids: torch.Tensor, scores=None, **kw) -> torch.Tensor:
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        hit = self.candidates[input_ids[:, -1].cpu().clamp(max=len(self.candidates) - 1)]
        for row in torch.nonzero(hit).flatten().tolist():
            done[row] = self.sep in self.tok.decode(input_ids[row, self.start:])
        return done


class HFPolicy:
    """Sample next steps from a causal LM: its chat template opens the answer, generation stops after the step
    separator (or EOS, which ends the solution). The step's token ids are passed on when the scorer shares the
    policy's tokenizer, so incremental scoring reads exactly the generated tokens. A step cut at `max_step_tokens`
    ends there: its separator is appended, so the next step continues after it, as the solution's text reads
    (without it the policy and an incremental PRM would run the steps together while the text separates them).
    A ledger (flops.Ledger) given to propose counts what runs: each sample's prefix prefilled again every round
    (no cache is kept between rounds), then its own generated tokens."""

    simulated = False

    def __init__(self, model, tok, temperature: float = 0.8, top_p: float = 1.0, max_step_tokens: int = 128,
                 separator: str = "\n\n", system_prompt: str | None = None, share_ids: bool = False, name: str = ""):
        self.model, self.tok = model, tok
        self.flops_shape = ModelShape.from_model(model, name)
        self.temperature, self.top_p, self.max_step_tokens = temperature, top_p, max_step_tokens
        self.sep, self.system_prompt, self.share_ids = separator, system_prompt, share_ids
        eos = model.generation_config.eos_token_id if model.generation_config.eos_token_id is not None else tok.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos])
        self._stop: SeparatorStop | None = None

    def root(self, prompt: str, ledger: Ledger | None = None) -> list[int]:

        return self.tok(chat_text(self.tok, prompt, self.system_prompt), add_special_tokens=False)["input_ids"]

    @torch.no_grad()
    def propose(self, prompt: str, states: Sequence[list[int]], k: int, seed: int,
                ledger: Ledger | None = None) -> list[list[Proposal]]:
        pad = self.tok.pad_token_id
        width = max(len(s) for s in states)
        ids = torch.tensor([[pad] * (width - len(s)) + list(s) for s in states], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in states], device=self.model.device)
        from transformers import StoppingCriteriaList

        if self._stop is None:
            self._stop = SeparatorStop(self.tok, self.sep, 0)
        self._stop.start = width
        torch.manual_seed(seed)
        sample = self.temperature > 0
        gen = self.model.generate(input_ids=ids, attention_mask=mask, do_sample=sample,
                                  temperature=self.temperature if sample else None,
                                  top_p=self.top_p if sample else None, max_new_tokens=self.max_step_tokens,
                                  num_return_sequences=k, pad_token_id=pad,
                                  stopping_criteria=StoppingCriteriaList([self._stop]))
        new = gen[:, width:].tolist()  # (B * k, new)
        out: list[list[Proposal]] = [[] for _ in states]
        for row, toks in enumerate(new):
            parent = states[row // k]
            step, done = [], False
            for t in toks:
                if t in self.eos:
                    done = True
                    break
                step.append(t)
                if self.tok.decode(step).endswith(self.sep):
                    break
            text = self.tok.decode(step, skip_special_tokens=True)
            n = len(step) + int(done)
            if text.endswith(self.sep):
                text = text[:-len(self.sep)]
            elif not done and len(step) < self.max_step_tokens:
                done = True  # stopped on padding: the model ended
            elif not done:  # cut at max_step_tokens: the step ends here, and the policy and PRM see its separator
                step = step + self.tok.encode(self.sep, add_special_tokens=False)
            if ledger is not None:
                ledger.add_generation(len(parent), n, True, LEDGER_KIND, "scoring")
            out[row // k].append(Proposal(text, done, list(parent) + step, n, list(step) if self.share_ids else None))
        return out
