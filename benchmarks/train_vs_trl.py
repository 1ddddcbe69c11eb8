"""DPO training throughput and peak memory: implicit-prm against TRL's DPOTrainer, LoRA and full fine-tuning.

Both sides train the same model on the same preference pairs, in the same order (TRL's sampler is sequential and
its dataset is laid out in implicit-prm's batch schedule), with the same batch size, steps, lr (constant), beta,
max grad norm, AdamW (fused), LoRA settings (r 16, alpha 32, dropout 0, "all-linear"), fp32, no gradient
checkpointing, and reference log-probs computed once before training (TRL: precompute_ref_log_probs=True). The
pairs are built-in problems with one correct (chosen) and one incorrect (rejected) solution each; the prompt is
the chat template with the same system prompt on both sides, and every completion ends with the EOS token (TRL
appends it to non-conversational data; here it is in the data, so both sides see the same text). The script checks
that both tokenize every pair to the same ids. Each configuration runs in a fresh process.

Tokens/s counts real (unpadded) tokens, prompt + chosen + prompt + rejected per pair, over the timed steps that
follow the warm-up steps. Peak RSS is reset (freed heap handed back first) after the warm-up steps, so it covers
the timed steps: weights, gradients, optimizer states and one step's activations.

What FLOP counts predict (ratio = TRL FLOPs / implicit-prm FLOPs for the same steps). Per position the decoder costs
f_t = 2 x its matmul parameters forward and the LM head f_h = 2 x H x V; a backward costs two forwards, one where
the weights are frozen (LoRA: input gradients only). Both sides run the decoder over the same padded (2B, W)
batch: chosen and rejected rows together, right-padded to the longest (TRL concatenates them; implicit-prm puts
chosen then rejected in one micro-batch). The difference is the LM head. TRL's fused head on a CPU (no Triton)
scores every position, prompt and padding included, all N = 2B (W - 1) of them; implicit-prm scores the R response
positions only. Both recompute the head in backward (forward, recompute, input grad, weight grad):
    full:  TRL 3 f_t 2BW + 4 f_h N    implicit-prm 3 f_t 2BW + 4 f_h R
    LoRA:  TRL 2 f_t 2BW + 3 f_h N    implicit-prm 2 f_t 2BW + 3 f_h R   (the tied head is frozen under LoRA)
With precomputed reference log-probs neither side runs a reference forward in a step. Attention's T^2 term is
left out. FLOPs also leave out the elementwise work over the vocabulary: TRL's CPU fallback folds (4096, 32768)
fp32 logit tiles with some ten full passes each (exp, entropy, mean logit, is-top-1 masks) in forward and again in
backward; implicit-prm takes a logsumexp over 256-row chunks. So the measured ratio can exceed the prediction.

    python benchmarks/train_vs_trl.py [--steps 4] [--warmup 2] [--batch-size 8] [--configs full lora] [--tiny]

Prints a table and writes benchmarks/results/train_vs_trl.json. Not a timed test: read the ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import common
import torch

LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"}


def make_pairs(n_pairs: int, path: Path, eos: str, seed: int = 11) -> Path:
    """Built-in problems, one correct and one incorrect completion each, every completion ending with EOS."""
    from implicit_prm.core.io import write_jsonl
    from implicit_prm.data.builtin import BuiltinDataConfig, generate_rollouts

    recs = generate_rollouts(BuiltinDataConfig(output="-", n_problems=n_pairs, samples_per_problem=2, balance=True,
                                               seed=seed))
    for r in recs:
        r["completions"] = [c + eos for c in r["completions"]]
    write_jsonl(path, recs)
    return path


def tiny_model(path: Path) -> str:
    """A random 2-layer Llama with the SmolLM2 tokenizer (the smoke test's model)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from implicit_prm.models.loading import resolve

    tok = AutoTokenizer.from_pretrained(resolve("smollm2-135m"))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True,
                      pad_token_id=tok.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def ours_config(a: dict, out: str):
    from implicit_prm.training.config import TrainConfig

    return TrainConfig(data=a["data"], output=out, model=a["model"], objective="dpo", beta=a["beta"], lr=a["lr"],
                       batch_size=a["batch_size"], max_steps=a["warmup"] + a["steps"], schedule="constant",
                       warmup_ratio=0.0, max_grad_norm=1.0, seed=0, lora=a["lora"], lora_r=LORA["r"],
                       lora_alpha=LORA["lora_alpha"], lora_dropout=0.0, lora_target="all-linear", precision="fp32",
                       gradient_checkpointing=False, checkpoint_every=0, progress=False,
                       system_prompt=a["system_prompt"], max_length=a["max_length"],
                       logprob_cache=str(Path(out).parent / "ref.sqlite"))


def scheduled_pairs(a: dict):
    """(tokenizer, encoded samples, samples, (chosen, rejected) positions in the order implicit-prm's train()
    takes them): TRL gets the pairs in this order, and the FLOP count reads their lengths."""
    from implicit_prm.data import read_samples
    from implicit_prm.models.loading import load_tokenizer
    from implicit_prm.steps.encoding import Encoder, encode_samples
    from implicit_prm.training.plan import build_examples, make_plan

    cfg = ours_config({**a, "lora": False}, "-")
    tok = load_tokenizer(cfg.model)
    samples = read_samples(cfg.data, require_label=True)
    encs = encode_samples(Encoder(tok, cfg.template, cfg.max_length, cfg.overlong, cfg.system_prompt), samples)
    examples, _ = build_examples(samples, encs, True, cfg.max_pairs_per_prompt, cfg.seed)
    plan = make_plan(len(examples), cfg.batch_size, cfg.epochs, cfg.seed, cfg.max_steps)
    return tok, encs, samples, [examples[i].rows for step in plan for i in step]


def flop_ratio(a: dict) -> dict:
    """TRL's FLOPs over implicit-prm's for the timed steps, full and LoRA (see the module docstring)."""
    from transformers import AutoConfig

    from implicit_prm.models.loading import resolve

    f_t, f_h = common.flops_per_token(AutoConfig.from_pretrained(resolve(a["model"])))
    _, encs, _, pairs = scheduled_pairs(a)
    b, rows, n_head, resp, real = a["batch_size"], 0, 0, 0, 0
    for s in range(a["warmup"], a["warmup"] + a["steps"]):
        seqs = [encs[i] for p in pairs[s * b:(s + 1) * b] for i in p]
        w = max(len(e) for e in seqs)
        rows, n_head = rows + len(seqs) * w, n_head + len(seqs) * (w - 1)
        resp, real = resp + sum(len(e.response_ids) for e in seqs), real + sum(len(e) for e in seqs)
    return {"tokens_per_step": real / a["steps"], "padded_tokens_per_step": rows / a["steps"],
            "response_tokens_per_step": resp / a["steps"], "decoder_flops_per_token": f_t, "head_flops_per_token": f_h,
            "full": (3 * f_t * rows + 4 * f_h * n_head) / (3 * f_t * rows + 4 * f_h * resp),
            "lora": (2 * f_t * rows + 3 * f_h * n_head) / (2 * f_t * rows + 3 * f_h * resp)}


def trl_dataset(a: dict):
    """The pairs as TRL's non-conversational preference data, and implicit-prm's ids of each (to compare)."""
    from datasets import Dataset

    tok, encs, samples, pairs = scheduled_pairs(a)
    rows, ids = [], []
    for c, r in pairs:
        messages = [{"role": "user", "content": samples[c].prompt}]
        if a["system_prompt"] is not None:
            messages.insert(0, {"role": "system", "content": a["system_prompt"]})
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        rows.append({"prompt": prompt, "chosen": samples[c].response, "rejected": samples[r].response})
        ids.append((encs[c].prompt_ids, encs[c].response_ids, encs[r].response_ids))
    return tok, Dataset.from_list(rows), ids


def trl_worker(a: dict) -> dict:
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    from implicit_prm.models.loading import resolve

    tmp, (warm, steps), marks = Path(a["tmp"]), (a["warmup"], a["steps"]), {}

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            marks[state.global_step] = time.perf_counter()
            if state.global_step == warm:
                marks["setup_peak_rss_mib"] = common.rss_mib("VmHWM")  # loading, reference pass and the warm-up steps
                common.reset_peak_rss()
                marks["between_steps_rss_mib"] = common.rss_mib()
            elif state.global_step == warm + steps:
                marks["peak_rss_mib"] = common.rss_mib("VmHWM")

    tok, ds, ours_ids = trl_dataset(a)
    conf = DPOConfig(output_dir=str(tmp / "trl"), per_device_train_batch_size=a["batch_size"], max_steps=warm + steps,
                     learning_rate=a["lr"], lr_scheduler_type="constant", beta=a["beta"], max_grad_norm=1.0,
                     optim="adamw_torch_fused", weight_decay=0.0, activation_checkpointing=False, bf16=False,
                     use_cpu=True, precompute_ref_log_probs=True, train_sampling_strategy="sequential",
                     max_length=a["max_length"], logging_steps=1, report_to="none", save_strategy="no",
                     disable_tqdm=True, dataloader_pin_memory=False, seed=0)
    model = AutoModelForCausalLM.from_pretrained(resolve(a["model"]), dtype=torch.float32)
    peft = LoraConfig(task_type="CAUSAL_LM", **LORA) if a["lora"] else None
    trainer = DPOTrainer(model=model, args=conf, train_dataset=ds, processing_class=tok, peft_config=peft,
                         callbacks=[Clock()])
    got = [(x["prompt_ids"], x["chosen_ids"], x["rejected_ids"]) for x in trainer.train_dataset]
    same = sum(1 for g, o in zip(got, ours_ids) if [list(t) for t in g] == [list(t) for t in o])
    trainer.train()
    b = a["batch_size"]
    n_tok = sum(2 * len(p) + len(c) + len(r) for p, c, r in got[warm * b:(warm + steps) * b])
    secs = marks[warm + steps] - marks[warm]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"tokens_per_s": n_tok / secs, "s_per_step": secs / steps, "tokens_per_step": n_tok / steps,
            "first_loss": losses[0], "final_loss": losses[-1], "pairs_with_same_ids": same, "pairs": len(got),
            **{k: v for k, v in marks.items() if isinstance(k, str)}}


def watch_log(log_path: Path, warm: int, last: int, peaks: dict, stop: threading.Event) -> None:
    """Beside train(): reset the peak RSS once the warm-up steps are logged, read it when the last step is."""
    reset = False
    while not stop.is_set():
        n = len(log_path.read_text().splitlines()) if log_path.exists() else 0
        if n >= warm and not reset:
            peaks["setup_peak_rss_mib"] = common.rss_mib("VmHWM")
            common.reset_peak_rss()
            peaks["between_steps_rss_mib"] = common.rss_mib()
            reset = True
        if reset and n >= last:
            peaks["peak_rss_mib"] = common.rss_mib("VmHWM")
            return
        time.sleep(0.02)


def ours_worker(a: dict) -> dict:
    from implicit_prm.training.loop import train

    tmp, warm, steps, peaks, stop = Path(a["tmp"]), a["warmup"], a["steps"], {}, threading.Event()
    log_path = tmp / "run" / "train_log.jsonl"
    watcher = threading.Thread(target=watch_log, args=(log_path, warm, warm + steps, peaks, stop), daemon=True)
    watcher.start()
    train(ours_config(a, str(tmp / "run")))
    stop.set()
    watcher.join()
    if "peak_rss_mib" not in peaks:  # steps too fast to watch (tiny models): the whole run's peak
        peaks["peak_rss_mib"], peaks["peak_scope"] = common.rss_mib("VmHWM"), "whole run"
    log = [json.loads(line) for line in log_path.read_text().splitlines()]
    first, last = log[warm - 1], log[warm + steps - 1]
    secs, n_tok = last["elapsed_s"] - first["elapsed_s"], last["tokens"] - first["tokens"]
    return {"tokens_per_s": n_tok / secs, "s_per_step": secs / steps, "tokens_per_step": n_tok / steps,
            "first_loss": log[0]["loss"], "final_loss": last["loss"], **peaks}


def worker(a: dict) -> None:
    os.environ["HF_DATASETS_CACHE"] = str(Path(a["tmp"]) / "hf_datasets")  # TRL caches its reference pass here
    torch.manual_seed(0)
    common.worker_result(trl_worker(a) if a["side"] == "trl" else ours_worker(a))


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())  # 1, 5 and 15 minutes, as uptime


def source() -> str:
    """The commit (dirty: uncommitted changes) and where implicit_prm was imported from."""
    import implicit_prm

    rev = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent, capture_output=True,
                         text=True).stdout.strip()
    return f"{rev or 'unknown commit'}; implicit_prm from {Path(implicit_prm.__file__).parent}"


def print_table(rows: dict, bound: dict) -> None:
    for key, r in rows.items():
        if "tokens_per_s" in r:
            side, cfg = key.split("/")
            base = rows.get(f"trl/{cfg}", {}).get("tokens_per_s")
            r["ratio_vs_trl"] = r["tokens_per_s"] / base if base else None
            r["flop_ratio"] = bound[cfg] if side == "ours" else 1.0
    common.print_rows(rows, common.throughput_columns("vs TRL", "ratio_vs_trl")
               + [("1st loss", 8, lambda r: common.num(r["first_loss"], ".4f")),
                  ("last loss", 9, lambda r: common.num(r["final_loss"], ".4f"))], key_width=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--steps", type=int, default=4, help="timed steps, after the warm-up steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (the peak RSS is reset after them)")
    ap.add_argument("--batch-size", type=int, default=8, help="preference pairs per step (2x sequences)")
    ap.add_argument("--pairs", type=int, default=None, help="pairs in the data (default: batch x all steps)")
    ap.add_argument("--configs", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--beta", type=float, default=0.05)
    ap.add_argument("--system-prompt", default=None, help="system message (default: the chat template's own)")
    ap.add_argument("--max-length", type=int, default=1024)
    ap.add_argument("--tiny", action="store_true", help="a tiny random model, 1 warm-up + 1 timed step of 1 pair")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    tmp = Path(tempfile.mkdtemp())
    if args.tiny:
        args.model, args.steps, args.warmup, args.batch_size = tiny_model(tmp / "tiny"), 1, 1, 1
    from implicit_prm.models.loading import load_tokenizer

    n_pairs = args.pairs or args.batch_size * (args.warmup + args.steps)
    data = make_pairs(n_pairs, tmp / "pairs.jsonl", load_tokenizer(args.model).eos_token)
    settings = {"model": args.model, "data": str(data), "steps": args.steps, "warmup": args.warmup, "lr": args.lr,
              "batch_size": args.batch_size, "beta": args.beta, "system_prompt": args.system_prompt,
              "max_length": args.max_length}
    bound = flop_ratio(settings)
    print(f"FLOP counts predict implicit-prm / TRL: full {bound['full']:.2f}x, LoRA {bound['lora']:.2f}x "
          f"({bound['tokens_per_step']:.0f} real tokens per step, {bound['padded_tokens_per_step']:.0f} padded, "
          f"{bound['response_tokens_per_step']:.0f} response)", flush=True)
    before, src, rows = load(), source(), {}
    for cfg in args.configs:  # interleaved: TRL then ours, per configuration
        for side in ("trl", "ours"):
            run_tmp = tmp / f"{side}_{cfg}"
            run_tmp.mkdir()
            rows[f"{side}/{cfg}"] = r = common.run_isolated(__file__, {**settings, "side": side, "lora": cfg == "lora",
                                                                  "tmp": str(run_tmp)})
            print(f"{side}/{cfg}: {r}", flush=True)
    print_table(rows, bound)
    common.save("train_vs_trl", {"goal": "implicit-prm >= 1.15x TRL DPOTrainer tokens/s, with no more peak memory",
                          "precision": "fp32 on both sides (weights and compute)", "load_before": before, "load_after": load(), "source": src, "pairs": n_pairs,
                          "settings": {**{k: v for k, v in settings.items() if k != "data"}, "lora": LORA},
                          "flop_ratio": bound, "rows": rows})
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
