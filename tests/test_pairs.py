"""Tests for data/pairs.py: (chosen, rejected) pairs for DPO/NCA with a seeded cap, and unpaired samples for CE/KTO."""
from __future__ import annotations

import json

import pytest

from implicit_prm.core.errors import ConfigError
from implicit_prm.data import PairStats, Sample, build_pairs, read_samples, unpaired


def make(rows: list[tuple[str, str, int | None]]) -> list[Sample]:
    """Samples from (prompt, response, label) rows, one record per row, in file order."""
    return [Sample(p, r, y, None, {"prompt": p, "response": r, "label": y}, ("t.jsonl", i + 1), i, 0)
            for i, (p, r, y) in enumerate(rows)]


# Prompt A: correct c1, c2 and incorrect w1, w2, w3, interleaved. B: all wrong. C: one of each plus an
# unlabelled sample. D: unlabelled only (ignored entirely).
ROWS = [("A", "w1", 0), ("B", "b1", 0), ("A", "c1", 1), ("A", "w2", 0), ("C", "u", None), ("A", "c2", 1),
        ("B", "b2", 0), ("C", "cw", 0), ("D", "d", None), ("A", "w3", 0), ("C", "cc", 1)]


def names(pairs) -> list[tuple[str, str]]:
    return [(c.response, r.response) for c, r in pairs]


def test_all_combinations_in_file_order():
    pairs, stats = build_pairs(make(ROWS), max_pairs_per_prompt=None, seed=0)
    # A: 2 correct x 3 incorrect = 6 pairs, correct-major; B: none; C: 1 x 1 = 1 pair.
    assert names(pairs) == [("c1", "w1"), ("c1", "w2"), ("c1", "w3"),
                            ("c2", "w1"), ("c2", "w2"), ("c2", "w3"), ("cc", "cw")]
    assert all(c.label == 1 and r.label == 0 and c.prompt == r.prompt for c, r in pairs)
    assert stats == PairStats(n_prompts=3, n_prompts_without_pair=1, n_pairs=7, n_pairs_before_cap=7)


def test_cap_keeps_seeded_subset_in_original_order():
    samples = make(ROWS)
    full = names(build_pairs(samples, None, seed=0)[0])[:6]
    pairs, stats = build_pairs(samples, max_pairs_per_prompt=2, seed=0)
    kept_a = names(pairs)[:2]
    assert len(kept_a) == 2 and set(kept_a) <= set(full)
    assert kept_a == sorted(kept_a, key=full.index)  # original order preserved
    assert names(pairs)[2:] == [("cc", "cw")]  # C has 1 pair, under the cap: untouched
    assert stats == PairStats(n_prompts=3, n_prompts_without_pair=1, n_pairs=3, n_pairs_before_cap=7)
    # Pinned: random.Random("0:0").sample(range(6), 2) -> indices {4, 5}; changing the seeding breaks old runs.
    assert kept_a == [("c2", "w2"), ("c2", "w3")]


def test_cap_is_deterministic_per_seed_and_varies_across_seeds():
    samples = make(ROWS)
    assert build_pairs(samples, 2, seed=1)[0] == build_pairs(samples, 2, seed=1)[0]
    subsets = {tuple(names(build_pairs(samples, 2, seed=s)[0])) for s in range(4)}
    assert len(subsets) > 1


def test_cap_draw_depends_on_prompt_position_not_on_other_prompts():
    a_only = [row for row in ROWS if row[0] == "A"]
    alone = names(build_pairs(make(a_only), 2, seed=0)[0])
    with_others = names(build_pairs(make(ROWS), 2, seed=0)[0])[:2]
    assert alone == with_others  # A is prompt 0 in both files


def test_cap_at_or_above_count_keeps_everything_and_bad_cap_is_an_error():
    samples = make(ROWS)
    assert build_pairs(samples, 6, seed=0)[0] == build_pairs(samples, None, seed=0)[0]
    with pytest.raises(ConfigError, match="max_pairs_per_prompt"):
        build_pairs(samples, 0, seed=0)


def test_no_labelled_samples_gives_no_pairs():
    pairs, stats = build_pairs(make([("A", "x", None), ("A", "y", None)]), None, seed=0)
    assert pairs == [] and stats == PairStats(0, 0, 0, 0)


def test_unpaired_keeps_labelled_in_file_order():
    assert [s.response for s in unpaired(make(ROWS))] == ["w1", "b1", "c1", "w2", "c2", "b2", "cw", "w3", "cc"]


def test_pairs_from_a_rollouts_file(tmp_path):
    recs = [{"prompt": "A", "completions": ["a0", "a1", "a2"], "correctness": [False, True, True]},
            {"prompt": "B", "completions": ["b0"], "correctness": [True]},
            {"prompt": "A", "completions": ["a3"], "correctness": [False]}]
    path = tmp_path / "roll.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs), encoding="utf-8")
    pairs, stats = build_pairs(read_samples(path), None, seed=0)
    # The same prompt text in two records is one prompt: 2 correct x 2 incorrect.
    assert names(pairs) == [("a1", "a0"), ("a1", "a3"), ("a2", "a0"), ("a2", "a3")]
    assert [(c.record["completion_index"], r.group) for c, r in pairs] == [(1, 0), (1, 2), (2, 0), (2, 2)]
    assert stats == PairStats(n_prompts=2, n_prompts_without_pair=1, n_pairs=4, n_pairs_before_cap=4)
