"""Step-level search over partial solutions, as search-and-learn (Beeching et al. 2024, HF blog "Scaling test-time
compute"; Snell et al. 2024, arXiv 2408.03314) defines it, guided by any step scorer:

- best-of-n: n solutions sampled step by step to the end, independently; the best-scored finished one wins.
- beam: n beams from the prompt, one sampled step each; every round the n // beam_width best unfinished beams are
  kept, and each is extended by beam_width sampled next steps, so n candidates again. A beam that finishes leaves
  the pool; it ends when n have finished, none is left, or max_steps / the token budget is reached.
- dvts (diverse verifier tree search): n // beam_width independent subtrees; each round a subtree's current beam is
  extended by beam_width sampled steps and only its best one is kept, so each subtree greedily follows its own
  best path; the best of the subtrees' final beams wins.
A beam's score is an aggregation of its step rewards (rewards.aggregate: min, the paper's choice; last; sum = the
last q-value; mean). Ties keep the earlier beam. Every proposed step is logged (Search.explored), kept or not.

The policy (`Proposer`) and the scorer (`StepScorer`) are protocols: search/policies.py and search/scoring.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from ..flops.counting import ModelShape
from ..flops.ledger import Ledger
from ..rewards import aggregate

STRATEGIES = ("best-of-n", "beam", "dvts")


@dataclass
class Proposal:
    """One sampled next step: its text (with the separator that follows it, unless it ends the solution), its
    token ids in the scorer's vocabulary when the policy shares it (else None: the scorer tokenizes the text),
    whether it ends the solution, the policy's state after it, and the tokens generated for it."""

    text: str
    done: bool
    state: Any
    n_tokens: int
    ids: list[int] | None = None


@dataclass
class Node:
    """A partial solution: the steps so far, their rewards, and the policy's and scorer's state after them."""

    id: int
    parent: int | None
    steps: list[str]
    rewards: list[float]
    done: bool
    policy_state: Any
    scorer_state: Any = field(repr=False, default=None)


class Proposer(Protocol):
    """The policy. `flops_shape`: the model its generation is counted as; `simulated`: its text is written without
    a model (then the ledger counts it as `flops_shape` generating it)."""

    flops_shape: ModelShape
    simulated: bool

    def root(self, prompt: str, ledger: Ledger | None = None) -> Any: ...

    def propose(self, prompt: str, states: Sequence[Any], k: int, seed: int,
                ledger: Ledger | None = None) -> list[list[Proposal]]:
        """k sampled next steps for each state (deterministic given seed); what runs is counted in `ledger`."""


class StepScorer(Protocol):
    """The PRM as search uses it. `flops_shape` is None where its FLOPs are unknown (a remote PRM); `prm_tokens`
    counts the tokens it has run through its models (the PRM and its reference each)."""

    flops_shape: ModelShape | None
    lora: bool
    prm_tokens: int

    def root(self, prompt: str, ledger: Ledger | None = None) -> Any: ...

    def extend(self, prompt: str, parents: Sequence[Node], proposals: Sequence[Proposal],
               ledger: Ledger | None = None) -> list[tuple[list, Any]]:
        """(the step rewards of every step, scorer state after the step) of each proposal appended to its parent
        (earlier steps' rewards may change where the new step re-tokenizes the join); counted in `ledger`."""


@dataclass
class SearchLedgers:
    """One problem's FLOPs ledgers: the policy's and the PRM's (None where the PRM's FLOPs are unknown)."""

    policy: Ledger | None = None
    prm: Ledger | None = None

    def items(self):
        return (("policy", self.policy), ("prm", self.prm))


class Search:
    """One problem's search: expands nodes through the policy and the scorer, keeps the log and the budget."""

    def __init__(self, prompt: str, proposer: Proposer, scorer: StepScorer, agg: str = "min", max_steps: int = 10,
                 token_budget: int = 0, seed: int = 0, ledgers: SearchLedgers | None = None):
        self.prompt, self.proposer, self.scorer = prompt, proposer, scorer
        self.ledgers = ledgers or SearchLedgers()
        self.agg, self.max_steps, self.token_budget, self.seed = agg, max_steps, token_budget, seed
        self.explored: list[dict] = []
        self.generated_tokens = 0
        self.rounds = 0
        self.root = Node(-1, None, [], [], False, proposer.root(prompt, self.ledgers.policy),
                         scorer.root(prompt, self.ledgers.prm))

    def score(self, node: Node) -> float:
        return aggregate(node.rewards)[self.agg] if node.rewards else float("-inf")

    def out_of_budget(self) -> bool:
        return bool(self.token_budget) and self.generated_tokens >= self.token_budget

    def expand(self, nodes: Sequence[Node], k: int) -> list[list[Node]]:
        """k children of each node: sampled steps, scored; every child is logged."""
        proposals = self.proposer.propose(self.prompt, [n.policy_state for n in nodes], k,
                                          self.seed * 1_000_003 + self.rounds, self.ledgers.policy)
        self.rounds += 1
        parents = [n for n, ps in zip(nodes, proposals) for _ in ps]
        flat = [p for ps in proposals for p in ps]
        scored = self.scorer.extend(self.prompt, parents, flat, self.ledgers.prm)
        children: list[Node] = []
        for parent, prop, (rewards, state) in zip(parents, flat, scored):
            depth = len(parent.steps) + 1
            reward = rewards[-1]
            child = Node(len(self.explored), None if parent.id < 0 else parent.id, parent.steps + [prop.text],
                         list(rewards), prop.done or depth >= self.max_steps, prop.state, state)
            self.generated_tokens += prop.n_tokens
            self.explored.append({"id": child.id, "parent": child.parent, "depth": depth, "step": prop.text,
                                  "reward": reward, "q_value": sum(child.rewards), "score": self.score(child),
                                  "done": child.done, "finished": prop.done, "tokens": prop.n_tokens})
            children.append(child)
        out, i = [], 0
        for ps in proposals:
            out.append(children[i:i + len(ps)])
            i += len(ps)
        return out

    def top(self, nodes: Sequence[Node], m: int) -> list[Node]:
        """The m best-scored nodes; ties keep the earlier one."""
        order = sorted(range(len(nodes)), key=lambda i: (-self.score(nodes[i]), i))
        return [nodes[i] for i in order[:m]]


def best_of_n(s: Search, n: int) -> list[Node]:
    """n independent solutions, each sampled step by step to its end; returns them (finished or cut)."""
    beams = s.expand([s.root], n)[0]
    while not s.out_of_budget():
        open_ = [b for b in beams if not b.done]
        if not open_:
            break
        nxt = iter(c[0] for c in s.expand(open_, 1))
        beams = [next(nxt) if not b.done else b for b in beams]
    return beams


def beam_search(s: Search, n: int, width: int) -> list[Node]:
    """search-and-learn's beam search (module docstring); returns the finished beams (the open ones if none)."""
    keep_n = max(1, n // width)
    active = s.expand([s.root], n)[0]
    finished: list[Node] = []
    while True:
        finished += [b for b in active if b.done]
        active = [b for b in active if not b.done]
        if not active or len(finished) >= n or s.out_of_budget():
            break
        kept = s.top(active, keep_n)
        per = -(-n // len(kept))  # fill back to n candidates
        active = [c for cs in s.expand(kept, per) for c in cs]
    return finished or active


def dvts(s: Search, n: int, width: int) -> list[Node]:
    """search-and-learn's DVTS (module docstring); returns each subtree's final beam."""
    subtrees = max(1, n // width)
    current = [s.top(cs, 1)[0] for cs in s.expand([s.root] * subtrees, width)]
    while not s.out_of_budget():
        open_idx = [i for i, b in enumerate(current) if not b.done]
        if not open_idx:
            break
        for i, cs in zip(open_idx, s.expand([current[i] for i in open_idx], width)):
            current[i] = s.top(cs, 1)[0]
    return current


def run_strategy(s: Search, strategy: str, n: int, width: int) -> tuple[Node, list[Node]]:
    """(the chosen solution, the final candidates): the best-scored finished candidate, else the best one."""
    if strategy == "best-of-n":
        final = best_of_n(s, n)
    elif strategy == "beam":
        final = beam_search(s, n, width)
    elif strategy == "dvts":
        final = dvts(s, n, width)
    else:
        raise ValueError(f"unknown strategy {strategy!r}; one of {STRATEGIES}")
    done = [b for b in final if b.done]
    return s.top(done or final, 1)[0], final
