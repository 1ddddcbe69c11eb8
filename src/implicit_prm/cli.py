"""The `implicit-prm` command: each verb maps to one config dataclass and one plain function."""
from __future__ import annotations

import argparse
import sys

from .config import add_arguments, from_args
from .errors import UserError


def _verbs():
    from .data.builtin import BuiltinDataConfig, write_builtin
    from .demo import DemoConfig, demo
    from .score import ScoreConfig, score
    from .train import TrainConfig, train

    return {
        "train": (TrainConfig, train, "train an implicit PRM on outcome-labelled responses"),
        "score": (ScoreConfig, score, "write step rewards, q-values and scores for responses"),
        "data": (BuiltinDataConfig, write_builtin, "generate built-in verifiable arithmetic rollouts"),
        "demo": (DemoConfig, demo, "the whole idea on the embedded model: data -> train -> score -> evaluate"),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="implicit-prm", description="Process rewards from outcome labels "
                                     "(implicit PRMs, Yuan et al. 2024, arXiv 2412.01981)")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (cls, fn, help_text) in _verbs().items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p, cls)
        p.set_defaults(func=(cls, fn))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cls, fn = args.func
    try:
        fn(from_args(cls, args))
    except UserError as e:
        print(f"implicit-prm {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"implicit-prm {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
