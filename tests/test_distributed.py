"""Two CPU processes (torchrun or accelerate launch, gloo) train to the same losses as one process with the same
global batch: plain DDP, and FSDP2 from configs/accelerate/fsdp.yaml."""
from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "accelerate"


def _train_argv(data, out, model, cache, batch, accum):
    return ["-m", "implicit_prm", "train", "--data", str(data), "--output", str(out), "--model", model,
            "--batch-size", str(batch), "--grad-accum", str(accum), "--lr", "1e-3", "--dtype", "fp32",
            "--ref-cache", str(cache), "--no-progress", "--checkpoint-every", "0", "--max-steps", "4"]


def _losses(out: Path) -> list[float]:
    return [json.loads(l)["loss"] for l in (out / "train_log.jsonl").read_text().splitlines()]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "ACCELERATE_DISABLE_RICH": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory, tiny_model):
    """Data and a 1-process run (batch 2 x accumulation 2) shared by the 2-process runs (batch 2 each)."""
    from implicit_prm.collect.builtin import write_builtin
    from implicit_prm.data.builtin import BuiltinDataConfig

    tmp = tmp_path_factory.mktemp("one_process")
    data = tmp / "train.jsonl"
    write_builtin(BuiltinDataConfig(output=str(data), n_problems=12, samples_per_problem=2, seed=3))
    one = tmp / "one"
    subprocess.run([sys.executable, *_train_argv(data, one, tiny_model, tmp / "c1.sqlite", 2, 2)],
                   check=True, env=_env(), capture_output=True, text=True)
    a = _losses(one)
    assert len(a) == 4 and a[-1] != pytest.approx(a[0], abs=1e-4)  # the model trained
    return data, one


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_two_processes_match_one_process(tmp_path, one_process_run, tiny_model):
    data, one = one_process_run
    two = tmp_path / "two"
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    res = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()),
                          *_train_argv(data, two, tiny_model, tmp_path / "c2.sqlite", 2, 1)],
                         env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 4
    assert a == pytest.approx(b, abs=1e-4)


# accelerate 1.15 turns the launcher's ACCELERATE_USE_FSDP into DistributedType.FSDP only from a GPU-like state
# (AcceleratorState.__init__); on CPU processes (MULTI_CPU, gloo) it silently runs plain DDP instead. This wrapper
# lets accelerate take its FSDP branch on CPU, then runs `implicit-prm train` unchanged and prints what prepare()
# made of the model, so the test can tell FSDP from a DDP fallback. See docs/scaling.md, "FSDP on CPU".
FSDP_ON_CPU = '''
import sys
import accelerate
from accelerate.state import PartialState
from accelerate.utils import DistributedType

PartialState(cpu=True)  # the gloo process group on CPU processes
PartialState._shared_state["distributed_type"] = DistributedType.MULTI_GPU  # so that AcceleratorState picks FSDP
_prepare = accelerate.Accelerator.prepare


def prepare(self, *args, **kwargs):
    out = _prepare(self, *args, **kwargs)
    p = next(out[0].parameters())
    local = tuple(p.to_local().shape) if hasattr(p, "to_local") else tuple(p.shape)
    print(f"[fsdp-check] rank {self.process_index}: {self.distributed_type.name} fsdp2={self.is_fsdp2} "
          f"{type(p).__name__} {local} of {tuple(p.shape)}", flush=True)
    return out


accelerate.Accelerator.prepare = prepare
from implicit_prm.cli import main

sys.exit(main())
'''


@pytest.mark.subprocess
def test_fsdp_two_processes_match_one_process(tmp_path, one_process_run, tiny_model):
    """configs/accelerate/fsdp.yaml (FSDP2, LlamaDecoderLayer wrap, full state dict) on 2 CPU processes: the same
    losses and final weights as 1 process, and a final model that from_pretrained loads."""
    import yaml
    from transformers import AutoModelForCausalLM

    data, one = one_process_run
    cfg = yaml.safe_load((CONFIGS / "fsdp.yaml").read_text())
    cfg.update(num_processes=2, use_cpu=True, mixed_precision="no")
    (tmp_path / "fsdp_cpu.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "fsdp_on_cpu.py").write_text(FSDP_ON_CPU)
    two = tmp_path / "two"
    argv = _train_argv(data, two, tiny_model, tmp_path / "c2.sqlite", 2, 1)[2:]  # without "-m implicit_prm"
    argv[argv.index("--checkpoint-every") + 1] = "2"  # also save_state (then drop) a checkpoint at step 2
    res = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                          str(tmp_path / "fsdp_cpu.yaml"), "--main_process_port", str(_free_port()),
                          str(tmp_path / "fsdp_on_cpu.py"), *argv],
                         env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, "\n".join([l for l in res.stderr.splitlines() if l.startswith("[rank0]")][-25:]
                                          or res.stderr.splitlines()[-40:])
    # both ranks print to one pipe: their lines can run together, so find the reports rather than split lines
    checks = re.findall(r"\[fsdp-check\] rank \d+: [^\[\n]*", res.stdout)
    assert len(checks) == 2 and all("FSDP fsdp2=True DTensor" in l for l in checks), checks  # sharded, not DDP
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 4
    assert a == pytest.approx(b, abs=1e-4)
    w1 = AutoModelForCausalLM.from_pretrained(one).state_dict()
    w2 = AutoModelForCausalLM.from_pretrained(two).state_dict()  # gathered from the shards by the main process
    assert w1.keys() == w2.keys()
    assert max((w1[k] - w2[k]).abs().max().item() for k in w1) < 1e-5
    w0 = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    assert max((w1[k] - w0[k]).abs().max().item() for k in w1) > 1e-4  # the weights moved
    assert not (two / "checkpoints").exists()


def _score_argv(data, out, prm, ref):
    return ["-m", "implicit_prm", "score", "--input", str(data), "--output", str(out), "--prm", prm, "--ref", ref,
            "--dtype", "fp32", "--ref-cache", "none", "--no-progress", "--batch-tokens", "300"]


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_two_process_scoring_is_identical_to_one(tmp_path, builtin_data, tiny_model, tiny_model_b):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    subprocess.run([sys.executable, *_score_argv(builtin_data, one, tiny_model, tiny_model_b)],
                   check=True, env=env, capture_output=True, text=True)
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    res = subprocess.run([torchrun, "--nproc_per_node", "2", "--master_port", str(_free_port()),
                          *_score_argv(builtin_data, two, tiny_model, tiny_model_b)],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "scored by 2 processes" in res.stdout
    a, b = one.read_text(), two.read_text()
    n = len(a.splitlines())
    assert n >= 8 and len(b.splitlines()) == n
    assert a == b  # same records, same order, same floats
    assert not list(tmp_path.glob("*.partial*"))  # the shards' partial files are merged and removed
    rewards = [json.loads(line)["step_rewards"] for line in a.splitlines()]
    assert any(abs(r) > 1e-6 for rec in rewards for r in rec)  # two different models: non-zero rewards


@pytest.mark.subprocess
@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_rollout_shards_over_two_processes_and_merges_in_input_order(tmp_path, tiny_model):
    """Greedy rollouts of 5 problems in batches of 2: 2 processes (batches 0, 2 and 1) write the same file, in
    input order, as 1 process."""
    probs = tmp_path / "problems.jsonl"
    probs.write_text("".join(json.dumps({"question": f"What is {a} + {a}?", "answer": str(2 * a)}) + "\n"
                             for a in range(1, 6)))
    outs = {}
    for n in (1, 2):
        out = tmp_path / f"r{n}.jsonl"
        argv = ["-m", "implicit_prm", "rollout", "--model", tiny_model, "--problems", str(probs), "--output", str(out),
                "--n-samples", "1", "--temperature", "0", "--max-new-tokens", "6", "--batch-size", "2",
                "--device", "cpu", "--no-progress"]
        cmd = ([str(Path(sys.executable).with_name("torchrun")), "--nproc_per_node", "2", "--master_port",
                str(_free_port())] if n == 2 else [sys.executable]) + argv
        res = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        outs[n] = [json.loads(x) for x in out.read_text().splitlines()]
        assert not list(tmp_path.glob(f"r{n}.jsonl.partial*"))  # every shard removed once merged
    assert [r["problem"] for r in outs[2]] == [f"What is {a} + {a}?" for a in range(1, 6)]
    assert outs[2] == outs[1]
