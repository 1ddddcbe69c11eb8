"""The main job on the embedded model: built-in data -> CE implicit PRM -> score held-out -> outcome and step metrics."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from .config import field, save_config
from .data.builtin import BuiltinDataConfig, write_builtin
from .eval.metrics import auroc, first_error_hit_rate
from .models import DEFAULT_MODEL
from .score import ScoreConfig, score
from .train import TrainConfig, train


@dataclass
class DemoConfig:
    output: str = field("runs/demo", help="directory for data, model, scores and summary (re-run resumes)")
    model: str = field(DEFAULT_MODEL, help="starting model")
    train_problems: int = field(400, help="training problems (one correct and one wrong response each)")
    test_problems: int = field(60, help="held-out problems")
    test_samples: int = field(4, help="responses per held-out problem")
    lr: float = field(2e-5, help="learning rate")
    beta: float = field(0.05, help="reward scale beta")
    batch_size: int = field(8, help="responses per step")
    lora: bool = field(False, help="train a LoRA adapter instead of all weights")
    system_prompt: str = field("", help="system message (empty: shorter sequences than the template's default)")
    dtype: str = field("auto", help="auto, bf16 or fp32")
    seed: int = field(0, help="seed for data and training")
    quick: bool = field(False, help="a one-minute smoke run (tiny data)")


def demo(cfg: DemoConfig) -> dict:
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "demo_config.json")
    n_train, n_test = (16, 4) if cfg.quick else (cfg.train_problems, cfg.test_problems)
    t0 = time.time()
    files = {"train": (n_train, 2, cfg.seed * 2 + 1), "test": (n_test, cfg.test_samples, cfg.seed * 2 + 2)}
    for split, (n, k, seed) in files.items():
        path = out / f"{split}.jsonl"
        if not path.exists():
            write_builtin(BuiltinDataConfig(output=str(path), n_problems=n, samples_per_problem=k, seed=seed))
    print(f"[demo] data: {n_train} train problems x 2 responses, {n_test} test problems x {cfg.test_samples}",
          flush=True)
    prm = train(TrainConfig(data=str(out / "train.jsonl"), output=str(out / "prm"), model=cfg.model,
                            objective="ce", lr=cfg.lr, beta=cfg.beta, batch_size=cfg.batch_size, lora=cfg.lora,
                            dtype=cfg.dtype, seed=cfg.seed, checkpoint_every=10, max_length=512,
                            system_prompt=cfg.system_prompt))
    scored = score(ScoreConfig(input=str(out / "test.jsonl"), output=str(out / "test_scored.jsonl"), prm=str(prm),
                               dtype=cfg.dtype))
    recs = [json.loads(l) for l in scored.read_text().splitlines()]
    labels = [int(r["correctness"]) for r in recs]
    summary = {"n_test_responses": len(recs), "frac_correct": sum(labels) / len(labels),
               "auroc": {k: auroc([r["scores"][k] for r in recs], labels) for k in ("min", "last", "sum", "mean")},
               "first_error_hit_rate": first_error_hit_rate([r["step_rewards"] for r in recs],
                                                            [r["first_error"] for r in recs]),
               "wall_s": time.time() - t0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n[demo] held-out results (CE implicit PRM, trained on outcome labels only)")
    print(f"  responses: {len(recs)}, correct: {summary['frac_correct']:.2f}")
    for k, v in summary["auroc"].items():
        print(f"  AUROC of '{k}' score at telling right from wrong: {v:.3f}" if v is not None else f"  {k}: n/a")
    if summary["first_error_hit_rate"] is not None:
        print(f"  lowest-reward step is the true first error in {summary['first_error_hit_rate']:.0%} of wrong "
              "solutions")
    print(f"  wall time this run: {summary['wall_s']:.0f} s; outputs in {out}")
    return summary
