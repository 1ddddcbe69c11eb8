"""`implicit-prm label-mc`: Monte-Carlo step labels from outcome-labelled responses (Math-Shepherd's estimation).

Math-Shepherd (Wang et al. 2024, arXiv 2312.08935) labels step k of a response by completing its first k steps K
times and grading the final answers: the soft estimate is the fraction of the K completions that reach the right
answer, the hard estimate is 1 if any does. Here the last step's value is the response's own correctness (the
full response is its own, single, completion), from its outcome label, else graded against `answer`.

On built-in data with the builtin completer (the simulated solver continuing with the error model that wrote the
responses) the labels are close to exact truth: a wrong prefix never reaches the right answer, and a right prefix
is labelled wrong only when all K continuations fail. Real Monte-Carlo labels are noisier: a completer can get
lucky from a wrong prefix, and unlucky K times from a right one. `<output>.stats.json` measures this against
`first_error` where the records carry it (the built-in data): a step is truly right iff its index < first_error or
first_error == -1.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ..core.config import field
from ..core.errors import ConfigError, InputError
from ..core.io import write_json, write_jsonl
from ..core.progress import progress
from ..core.results import text_table, write_result
from ..core.resume import PartialFile, run_signature
from ..data.formats import Sample, map_columns, read_samples
from ..data.grading import grade
from ..data.settings import InputSettings
from ..data.sources import input_records
from ..flops.counting import SMOLLM2_135M, ModelShape
from ..flops.ledger import Ledger
from ..models.chat import chat_text
from ..models.settings import DeviceSettings
from ..steps.splitting import step_spans
from .completers import BuiltinCompleter, Completer, HFCompleter, Prefix
from .simulated import add_counts, generation_counts, policy_tokenizer

FREE_ON_RESUME = ("output", "progress", "log_every")
CONSUMED = ("prompt", "problem", "response", "steps", "label", "final_answer_correct", "correctness",
            "step_labels", "completions")  # fields of formats 2 and 3 that the rollout record replaces


@dataclass
class McLabelConfig(InputSettings, DeviceSettings):
    input: str = field(help="outcome-labelled responses (any input format and form) with the reference answer in "
                            "'answer' (or 'reference', as the paper's rollouts have it)")
    output: str = field(help="rollout-format JSONL with per-completion step_labels and mc_values added")
    completer: Literal["builtin", "hf"] = field("builtin", help="what completes the prefixes: builtin = the simulated "
                                                                "solver (built-in data only), hf = --model")
    model: Optional[str] = field(None, help="with --completer hf: the causal LM (hub id, local dir, .gguf, "
                                            "smollm2-135m); no default")
    k: int = field(8, help="completions sampled per step prefix")
    label: Literal["hard", "soft"] = field("hard", help="step_labels: hard = 1 if any completion is right, soft = "
                                                        "the fraction right")
    split: Literal["auto", "steps", "markers", "blank", "regex"] = field(
        "auto", help="step boundaries, as train and score split them: auto = the input's steps list, else 'Step k:' "
                     "markers (two or more), else blank lines; or one of them, or --step-regex")
    step_regex: Optional[str] = field(None, help="with --split regex: a regex matching the text that ends a step")
    step_separator: str = field("\n\n", help="joins the 'steps' of pre-split inputs")
    temperature: float = field(0.7, help="hf: sampling temperature")
    top_p: float = field(0.95, help="hf: nucleus sampling")
    max_new_tokens: int = field(256, help="hf: max tokens per continuation")
    system_prompt: Optional[str] = field(None, help="hf: system message for the chat template")
    # compatibility: accepts the former flag --dtype and config key `dtype`, as train and score do; remove in 0.3
    precision: Literal["fp32", "bf16"] = field("fp32", help="hf: dtype of the model weights", aliases=("dtype",))
    batch_size: int = field(8, help="hf: prefixes per generate call (x k samples)")
    seed: int = field(0, help="sampling seed (per record, completion and step, so a resumed run samples the same)")
    progress: bool = field(True, help="show a progress bar")
    log_every: int = field(0, help="without a terminal (a log file): a progress line every N records (0: every "
                                   "tenth of the work)")

    def __post_init__(self):
        for name in ("k", "max_new_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"field '{name}' must be >= 1")
        if self.completer == "hf" and not self.model:
            raise ConfigError("field 'model' is required with --completer hf (there is no default model)")


def make_completer(cfg: McLabelConfig) -> Completer:
    if cfg.completer == "builtin":
        return BuiltinCompleter()
    return HFCompleter(cfg.model, cfg.temperature, cfg.top_p, cfg.max_new_tokens, cfg.system_prompt, cfg.precision,
                       cfg.batch_size, cfg.device, cfg.attn_implementation)


@dataclass
class _Plan:
    """What labelling one response takes: its proper prefixes, the reference answer, its own correctness."""

    prefixes: list[Prefix]
    answer: str
    outcome: int


def _plan(s: Sample, cfg: McLabelConfig) -> _Plan:
    path, line = s.source
    key = "answer" if s.record.get("answer") is not None else "reference"  # the paper's rollouts: `reference`
    answer = s.record.get(key)
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)) or not str(answer).strip():
        raise InputError(path, line, "answer", "missing or empty; label-mc grades completions against the reference "
                                               "answer (a string or number in 'answer' or 'reference')")
    answer = str(answer)
    try:
        spans = step_spans(s.response, s.steps, cfg.split, cfg.step_regex, cfg.step_separator)
    except ValueError as e:
        raise InputError(path, line, "steps" if s.steps else None, str(e)) from None
    texts = [s.response[a:b].rstrip() for a, b in spans]
    prefixes = [Prefix(s.prompt, s.response[:spans[k - 1][1]], texts[:k], len(spans), s.record,
                       f"{cfg.seed}:{s.group}:{s.index}:{k}", s.source) for k in range(1, len(spans))]
    outcome = s.label if s.label is not None else int(grade(s.response, answer).correct)
    return _Plan(prefixes, answer, outcome)


def _label_record(cfg: McLabelConfig, completer: Completer, raw: dict, samples: list[Sample],
                  plans: list[_Plan], count) -> tuple[dict, list[list[int]]]:
    """The rollout record of one input record with step_labels, mc_values (per completion) and mc_k added, and
    the token counts of its sampling, `count(prefixes, texts)` (the FLOPs ledger's)."""
    flat = [p for plan in plans for p in plan.prefixes]
    completed = completer.complete(flat, cfg.k) if flat else []
    texts = iter(completed)
    values = [[sum(grade(t, plan.answer).correct for t in next(texts)) / cfg.k for _ in plan.prefixes]
              + [float(plan.outcome)] for plan in plans]  # the last step: the response is its own completion
    labels = values if cfg.label == "soft" else [[int(x > 0) for x in v] for v in values]
    if samples[0].steps is not None:  # format 3 stays pre-split, so that training splits it the same way
        rec = dict(raw)
        rec.setdefault("final_answer_correct", bool(plans[0].outcome))
        rec.update(step_labels=labels[0], mc_values=values[0], mc_k=cfg.k)
        return rec, count(flat, completed)
    if "completions" in raw:
        rec = dict(raw)
    else:  # formats 2 and 3: one response, its other fields kept
        rec = {"prompt": samples[0].prompt, "completions": [samples[0].response],
               **{k: v for k, v in raw.items() if k not in CONSUMED}}
    rec["correctness"] = [bool(plan.outcome) for plan in plans]
    rec["step_labels"] = labels
    rec["mc_values"] = values
    rec["mc_k"] = cfg.k
    return rec, count(flat, completed)


def label_stats(records: list[dict], k: int) -> dict:
    """Counts, and where records carry `first_error` the accuracy of the labels against exact step truth: hard
    (mc_value > 0 = right) and soft@0.5 (mc_value >= 0.5 = right), on all steps and on the sampled ones (all but
    each response's last, whose value is its own correctness)."""
    n_resp = n_steps = n_truth = 0
    counts = {(name, subset): [0, 0, 0, 0] for name in ("hard", "soft@0.5") for subset in ("all", "sampled")}
    for rec in records:
        fes = rec.get("first_error")
        per_response = rec["mc_values"]
        if per_response and not isinstance(per_response[0], list):  # a pre-split record: one response
            per_response = [per_response]
        for i, v in enumerate(per_response):
            n_resp, n_steps = n_resp + 1, n_steps + len(v)
            fe = fes[i] if isinstance(fes, list) and i < len(fes) else fes
            if type(fe) is not int:
                continue
            n_truth += 1
            for p, x in enumerate(v):
                right = fe == -1 or p < fe
                for name, pred in (("hard", x > 0), ("soft@0.5", x >= 0.5)):
                    for subset in ("all", "sampled") if p < len(v) - 1 else ("all",):
                        counts[name, subset][2 * right + pred] += 1  # [wrong->wrong, wrong->right, right->wrong, ...]
    truth = None
    if n_truth:
        truth = {}
        for (name, subset), (ww, wr, rw, rr) in counts.items():
            def share(a, b):
                return a / b if b else None
            truth.setdefault(name, {})[subset] = {
                "n": ww + wr + rw + rr, "accuracy": share(ww + rr, ww + wr + rw + rr),
                "wrong_precision": share(ww, ww + rw), "wrong_recall": share(ww, ww + wr)}
    return {"schema": "implicit-prm/mc-label-stats/v1", "k": k, "n_responses": n_resp, "n_steps": n_steps,
            "n_sampled_steps": n_steps - n_resp, "n_completions": (n_steps - n_resp) * k,
            "n_responses_with_truth": n_truth, "truth": truth}


def format_label_stats(stats: dict) -> str:
    lines = [f"{stats['n_responses']} responses, {stats['n_steps']} steps labelled ({stats['n_sampled_steps']} by "
             f"sampling), {stats['n_completions']} completions sampled (K = {stats['k']})"]
    if stats["truth"]:
        def pct(x):
            return "n/a" if x is None else f"{100 * x:.1f}%"
        rows = [["labels vs first_error", "steps", "accuracy", "wrong: precision", "wrong: recall"]]
        for name, by in stats["truth"].items():
            for subset, m in by.items():
                rows.append([f"{name}, {subset} steps", str(m["n"]), pct(m["accuracy"]),
                             pct(m["wrong_precision"]), pct(m["wrong_recall"])])
        lines += text_table(rows)
    return "\n".join(lines)


def mc_label_ledger(cfg: McLabelConfig, completer: Completer):
    """(an empty ledger, count(prefixes, full texts) -> [context tokens, generated tokens of each]) for the
    completer: the LM's own size and tokenizer, or the simulated solver counted as the embedded model."""

    if isinstance(completer, HFCompleter):
        tok, system = completer.tok, cfg.system_prompt
        ledger = Ledger(ModelShape.from_model(completer.model, cfg.model), "label-mc")
    else:
        tok, system = policy_tokenizer(), None
        ledger = Ledger.simulated_policy("label-mc", ModelShape.from_config(SMOLLM2_135M))

    def count(prefixes: list[Prefix], completed: list[list[str]]) -> list[list[int]]:
        return generation_counts(tok, [(chat_text(tok, p.prompt, system) + p.text, [t[len(p.text):] for t in texts])
                                       for p, texts in zip(prefixes, completed)])
    return ledger, count


def label_mc(cfg: McLabelConfig) -> dict:
    """Label every response of cfg.input; write the rollout records, <output>.stats.json and the config beside them
    (atomically, the config last); resumes from <output>.partial (one finished input record per line)."""
    samples = read_samples(cfg.input, cfg.step_separator, input_format=cfg.input_format, columns=cfg.column_map)
    raws = [map_columns(rec, cfg.column_map) for _, rec in input_records(cfg.input)]
    groups: dict[int, list[Sample]] = {}
    for s in samples:
        groups.setdefault(s.group, []).append(s)
    plans = {g: [_plan(s, cfg) for s in group] for g, group in groups.items()}  # every input error before sampling
    completer = make_completer(cfg)
    for group in plans.values():
        for plan in group:
            for p in plan.prefixes:
                completer.check(p)

    out, src = Path(cfg.output), Path(cfg.input)
    partial = PartialFile(out.with_name(out.name + ".partial"), run_signature(
        cfg, FREE_ON_RESUME, input_size=src.stat().st_size, input_mtime_ns=src.stat().st_mtime_ns))
    items = {item["index"]: item for item in partial.read()}
    partial.restart(items.values())
    done = {g: item["record"] for g, item in items.items()}
    ledger, count = mc_label_ledger(cfg, completer)
    if done:
        print(f"[implicit-prm] resuming: {len(done)} of {len(groups)} records done", flush=True)
    bar = progress(len(groups), "label-mc", "record", cfg.progress, len(done), cfg.log_every)
    with partial.appender() as f:
        for g, group in groups.items():
            if g in done:
                continue
            done[g], tokens = _label_record(cfg, completer, raws[g], group, plans[g], count)
            items[g] = {"index": g, "record": done[g], "tokens": tokens}
            f.add(items[g])
            bar.update(1)
    bar.close()
    records = [done[g] for g in groups]
    stats = label_stats(records, cfg.k)

    for g in groups:
        add_counts(ledger, items[g].get("tokens", []), kind="mc_completions")

    def write(path, recs):
        n = write_jsonl(path, recs)
        write_json(path.with_name(path.name + ".stats.json"), stats)
        ledger.write(path)
        return n

    write_result(out, records, cfg, write=write)
    partial.remove()
    print(f"[implicit-prm] label-mc: wrote {len(records)} records to {out}\n" + format_label_stats(stats), flush=True)
    return stats
