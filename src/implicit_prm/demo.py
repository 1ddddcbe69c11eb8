"""The main job on the embedded model: built-in data -> CE implicit PRM -> score dev/test -> best-of-N, steps, report."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .collect.builtin import write_builtin
from .core.config import field, field_defaults, save_config
from .core.distributed import default_device
from .core.io import read_json_file, write_json
from .core.precision import resolve_precision
from .core.results import machine
from .core.resume import check_same_run, run_signature
from .data.builtin import BuiltinDataConfig
from .eval.bon import BonConfig, run_bon
from .eval.outcome import OutcomeConfig, run_outcome
from .eval.report import ReportConfig, make_report
from .eval.scored import merge_scored, score_once
from .eval.steps import StepsConfig, run_steps
from .models.loading import DEFAULT_MODEL
from .training.config import TrainConfig
from .training.loop import train

SOURCES = {"implicit_prm": "CE implicit PRM (trained on outcome labels)",
           "untrained": "untrained model, reference-free (beta * log pi)"}


@dataclass
class DemoConfig:
    output: str = field("", help="directory for data, model, scores and report (re-running resumes); default "
                                 "runs/demo, or runs/demo-quick with --quick")
    model: str = field(DEFAULT_MODEL, help="starting model")
    train_problems: int = field(400, help="training problems (one correct and one wrong response each; 400: the "
                                          "dev-chosen size that fits the 15-minute budget)")
    dev_problems: int = field(32, help="dev problems (4 responses each), for tuning the step-error threshold")
    test_problems: int = field(80, help="held-out test problems (80 x 16: enough for paired intervals against "
                                        "majority voting to exclude 0 at gaps of about 10 points)")
    test_samples: int = field(16, help="candidate solutions per test problem (best-of-N up to this N)")
    lr: float = field(1e-4, help="learning rate")
    beta: float = field(0.5, help="reward scale beta (0.5 learns faster than the paper's 0.05 at this budget)")
    batch_size: int = field(8, help="responses per step")
    lora: bool = field(True, help="train a LoRA adapter (r=16, all linear layers) instead of all weights")
    system_prompt: str = field("", help="system message (empty: shorter sequences than the template's default)")
    # compatibility: accepts the former flag --dtype and config key `dtype`; warn on use in 0.2, remove in 0.3
    precision: Literal["auto", "bf16", "fp32"] = field("auto", help="bf16 autocast where fast, else fp32",
                                                      aliases=("dtype",))
    seed: int = field(0, help="seed for data and training")
    quick: bool = field(False, help="a one-minute smoke run (tiny data)")


def demo(cfg: DemoConfig) -> dict:
    out = Path(cfg.output or ("runs/demo-quick" if cfg.quick else "runs/demo"))
    check_same_demo(cfg, out)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "demo_config.json")
    t0 = time.time()
    sizes = ({"train": (16, 2), "dev": (4, 4), "test": (4, 4)} if cfg.quick else
             {"train": (cfg.train_problems, 2), "dev": (cfg.dev_problems, 4), "test": (cfg.test_problems,
                                                                                        cfg.test_samples)})
    for i, (split, (n, k)) in enumerate(sizes.items()):
        path = out / f"{split}.jsonl"
        if not path.exists():  # train is balanced (one right, one wrong); dev/test are sampled as a solver would
            write_builtin(BuiltinDataConfig(output=str(path), n_problems=n, samples_per_problem=k,
                                            balance=split == "train", seed=1000 * cfg.seed + i + 1))
    print(f"[demo] data: train {sizes['train'][0]} problems x 2, dev {sizes['dev'][0]} x 4, "
          f"test {sizes['test'][0]} x {sizes['test'][1]}", flush=True)

    prm = str(train(TrainConfig(data=str(out / "train.jsonl"), output=str(out / "prm"), model=cfg.model,
                                objective="ce", lr=cfg.lr, beta=cfg.beta, batch_size=cfg.batch_size, lora=cfg.lora,
                                precision=cfg.precision, seed=cfg.seed, checkpoint_every=10, max_length=512,
                                system_prompt=cfg.system_prompt)))
    scored = {}
    for split in ("dev", "test"):
        scored[("implicit_prm", split)] = score_once(prm, out / f"{split}.jsonl", out / f"{split}.prm.jsonl",
                                                     precision=cfg.precision)
        # The reference pass above cached the untrained model's log-probs: this baseline needs no forward pass.
        scored[("untrained", split)] = score_once(cfg.model, out / f"{split}.jsonl",
                                                  out / f"{split}.untrained.jsonl", reference_free=True,
                                                  beta=cfg.beta, precision=cfg.precision, system_prompt=cfg.system_prompt)
    both = merge_scored({s: scored[(s, "test")] for s in SOURCES}, out / "test.both.jsonl")
    k = sizes["test"][1]
    ns = [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= k]
    bon = run_bon(BonConfig(input=str(both), ns=ns, seed=cfg.seed))
    outcome = run_outcome(OutcomeConfig(input=str(both)))
    steps = {s: run_steps(StepsConfig(input=str(scored[(s, "test")]), tune_on=str(scored[(s, "dev")])))
             for s in SOURCES}
    report = make_report(ReportConfig(output=str(out / "report.html"), bon=[str(both.with_suffix(".bon.json"))],
                                      steps=[str(Path(scored[(s, "test")]).with_suffix(".steps.json"))
                                             for s in SOURCES],
                                      outcome=[str(both.with_suffix(".outcome.json"))],
                                      scored=str(scored[("implicit_prm", "test")]), title="implicit-prm demo"))
    summary = {"bon": bon, "outcome": outcome, "steps": steps, "wall_s": time.time() - t0, "report": str(report),
               "machine": machine(), "precision": resolve_precision(default_device(), cfg.precision)}
    write_json(out / "summary.json", summary)
    _print_table(bon, outcome, steps, ns, summary["wall_s"], report)
    print(f"[demo] precision {summary['precision']} on {summary['machine']['cpu']} "
          f"(native CPU bf16: {summary['machine']['cpu_bf16_native']}, GPU: {summary['machine']['gpu']})")
    return summary


def check_same_demo(cfg: DemoConfig, out: Path) -> None:
    """A folder holding a demo with other settings (say a --quick run's small data and model) is refused, not
    resumed: its data files and finished model would be reused as they are."""
    saved = out / "demo_config.json"
    if saved.exists():
        check_same_run(read_json_file(saved), run_signature(cfg, ("output",)), out, field_defaults(DemoConfig))


def _print_table(bon: dict, outcome: dict, steps: dict, ns: list[int], wall: float, report: Path) -> None:
    m = bon["methods"]
    rows = [("implicit PRM, top-1 by min step reward", "implicit_prm.min"),
            ("implicit PRM, weighted majority (min)", "weighted_majority.implicit_prm.min"),
            ("untrained ref-free, top-1 by min", "untrained.min"),
            ("untrained ref-free, weighted majority (min)", "weighted_majority.untrained.min"),
            ("majority voting", "majority"), ("random pick", "random"), ("pass@N", "pass@N")]
    print("\n[demo] best-of-N accuracy (%) on held-out problems, mean over random subsets")
    print(f"  {'method':46s}" + "".join(f"{'N=' + str(n):>8s}" for n in ns))
    for label, key in rows:
        print(f"  {label:46s}" + "".join(f"{100 * a:8.1f}" for a in m[key]["acc"]))
    print("\n[demo] telling right from wrong, and finding the first wrong step (threshold tuned on dev)")
    for s, label in SOURCES.items():
        au = outcome["methods"][f"{s}.min"]["auroc"]
        ev = steps[s]["evaluated"]
        print(f"  {label:50s} AUROC(min) {au:.3f}   step-error F1 {100 * ev['f1']:.1f} "
              f"(acc on erroneous {100 * ev['acc_err']:.1f}, on correct {100 * ev['acc_ok']:.1f})")
    print(f"\n[demo] wall time {wall:.0f} s; report: {report}")
