"""The `implicit-prm` command: each verb maps to one config dataclass and one plain function."""
from __future__ import annotations

import argparse
import importlib
import sys

from .core.config import add_arguments, from_args
from .core.errors import UserError

# verb -> (module, config class, function, help); a dict is a group of sub-verbs (`implicit-prm eval bon`).
# Only the chosen verb's module is imported, so `--help` and light verbs start fast.
VERBS: dict = {
    "data": ("collect.builtin", "BuiltinDataConfig", "write_builtin", "generate built-in verifiable arithmetic rollouts"),
    "label-mc": ("collect.mc_labels", "McLabelConfig", "label_mc", "Monte-Carlo step labels (Math-Shepherd): grade K completions from each step prefix"),
    "label-autopsv": ("collect.autopsv", "AutoPSVConfig", "label_autopsv",
                      "AutoPSV step labels from an outcome verifier's confidence drops (Lu et al. 2024)"),
    "train": ("training.loop", "TrainConfig", "train", "train an implicit PRM on outcome labels, or a step-tag baseline "
                                               "(Math-Shepherd PRM, ORM)"),
    "rollout": ("collect.rollout", "RolloutConfig", "rollout", "sample and grade N responses per problem with HF generate"),
    "score": ("scoring.score", "ScoreConfig", "score", "write step rewards, q-values and scores for responses"),
    "search": ("search.run", "SearchConfig", "search",
               "step-level search (best-of-n, beam, DVTS) guided by a PRM, incremental for implicit PRMs"),
    "serve": ("serve.app", "ServeConfig", "serve", "a reward server: POST /score, POST /get_reward (OpenRLHF), "
                                                  "GET /health, with dynamic batching"),
    "rl": ("rl.run", "RLConfig", "rl", "train a policy with PRIME (implicit process rewards, PRM updated online) or "
                                       "outcome-only RLOO on TRL's GRPOTrainer"),
    "grade": ("collect.grade", "GradeConfig", "grade_file", "extract final answers and grade them against references"),
    "eval": {
        "bon": ("eval.bon", "BonConfig", "run_bon",
                "best-of-N accuracy against majority, weighted majority, random and pass@N"),
        "steps": ("eval.steps", "StepsConfig", "run_steps",
                  "ProcessBench step-error detection: accuracy on erroneous and correct samples, F1"),
        "outcome": ("eval.outcome", "OutcomeConfig", "run_outcome", "AUROC of each score at telling right from wrong"),
        "processbench": ("eval.processbench", "ProcessBenchConfig", "run_processbench",
                         "ProcessBench over its splits: one threshold tuned on half of gsm8k, F1 per split, average"),
        "prmbench": ("eval.prmbench", "PRMBenchConfig", "run_prmbench",
                     "PRMBench: F1 of valid and of erroneous steps, PRMScore, per error classification"),
    },
    "report": ("eval.report", "ReportConfig", "make_report",
               "one Markdown/HTML page with tables (bootstrap intervals), plots, step-shaded solutions and an error analysis"),
    "demo": ("demo", "DemoConfig", "demo", "the whole idea on the embedded model: data -> train -> score -> evaluate"),
    "flops": ("eval.flops", "FlopsConfig", "flops", "sum FLOPs ledgers per method into a table, or --paper: the paper's ratios"),
}


def _resolve(spec):
    module, cls, fn, _ = spec
    mod = importlib.import_module(f"implicit_prm.{module}")
    return getattr(mod, cls), getattr(mod, fn)


def _add(sub, name: str, spec, prog: str, chosen: list[str]) -> None:
    """Add a verb; only the chosen verb (chosen[0]) gets its flags, which needs its module imported."""
    if isinstance(spec, dict):
        group = sub.add_parser(name, help=f"{' | '.join(spec)}", description=f"{prog} {name}")
        inner = group.add_subparsers(dest="subcommand", required=True)
        for sub_name, sub_spec in spec.items():
            _add(inner, sub_name, sub_spec, f"{prog} {name}", chosen[1:] if chosen and chosen[0] == name else [])
        return
    p = sub.add_parser(name, help=spec[3], description=spec[3])
    if chosen and chosen[0] == name:
        cls, fn = _resolve(spec)
        add_arguments(p, cls)
        p.set_defaults(func=(cls, fn), verb=f"{prog} {name}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")][:2]
    parser = argparse.ArgumentParser(prog="implicit-prm", description="Process rewards from outcome labels "
                                     "(implicit PRMs, Yuan et al. 2024, arXiv 2412.01981)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, spec in VERBS.items():
        _add(sub, name, spec, "implicit-prm", words)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    cls, fn = args.func
    verb = args.verb
    del args.verb
    try:
        fn(from_args(cls, args))
    except UserError as e:
        print(f"{verb}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"{verb}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
