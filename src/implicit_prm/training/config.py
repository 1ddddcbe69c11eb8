"""`TrainConfig`: every setting of `implicit-prm train`, its flags, config file and Python API."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from .. import losses
from ..core.config import Alias, field
from ..core.errors import ConfigError
from ..data.settings import InputSettings
from ..models.loading import DEFAULT_MODEL
from ..models.settings import DeviceSettings


@dataclass
class TrainConfig(InputSettings, DeviceSettings):
    data: str = field(help="training data (JSONL/JSON in any input format, with outcome labels)",
                      hf=(Alias("dataset_name", prefix="hf:"),))
    output: str = field(help="output directory: model, train_log.jsonl, checkpoints/, train_config.json",
                        hf=("output_dir",))
    model: str = field(DEFAULT_MODEL, help="starting model: hub id, local dir, .gguf file or 'smollm2-135m'",
                       hf=("model_name_or_path",))
    ref: Optional[str] = field(None, help="reference model (default: the starting model; with --lora, its base "
                                          "weights with the adapter disabled)")
    objective: Literal[losses.IMPLICIT + losses.STEP] = field(
        "ce", help="training objective (losses.LOSSES): ce, dpo, nca, kto train an implicit PRM from outcome "
                   "labels; step_bce trains a Math-Shepherd PRM from step labels (`label-mc`, `label-autopsv`, "
                   "Math-Shepherd or PRM800K files); orm trains an outcome verifier at every step boundary")
    beta: float = field(losses.DEFAULT_BETA, help="reward scale in r = beta * log(pi/pi_ref) (TRL's DPO default is "
                                                  "0.1, ours 0.05: a TRL config file without `beta` gets 0.05)")
    lr: float = field(1e-5, help="peak learning rate", hf=("learning_rate",))
    epochs: int = field(1, help="passes over the training examples", hf=("num_train_epochs",))
    max_steps: Optional[int] = field(None, help="stop after this many optimizer steps (default: all epochs)")
    batch_size: int = field(8, help="examples per process per micro-batch (a pair counts as one example)",
                            hf=("per_device_train_batch_size",))
    grad_accum: int = field(1, help="micro-batches per optimizer step", hf=("gradient_accumulation_steps",))
    schedule: Literal["constant", "linear", "cosine"] = field(
        "linear", help="LR decay after warmup (--warmup-ratio; TRL/HF's `constant` has none)",
        hf=(Alias("lr_scheduler_type", type=str, values={"linear": "linear", "cosine": "cosine", "constant": "constant",
                                                         "constant_with_warmup": "constant"}),))
    warmup_ratio: float = field(0.1, help="fraction of steps with linear warmup")
    weight_decay: float = field(0.0, help="AdamW weight decay")
    max_grad_norm: float = field(1.0, help="gradient clipping norm (0 disables)")
    seed: int = field(0, help="seed for data order, pair sampling and init")
    lora: bool = field(False, help="train a LoRA adapter instead of all weights", hf=("use_peft",))
    lora_r: int = field(16, help="LoRA rank")
    lora_alpha: int = field(32, help="LoRA alpha")
    lora_dropout: float = field(0.0, help="LoRA dropout")
    lora_target: str = field("all-linear", help="LoRA target modules (peft syntax)")
    max_pairs_per_prompt: Optional[int] = field(None, help="dpo/nca: cap on (correct, incorrect) pairs per prompt")
    kto_desirable_weight: float = field(1.0, help="kto: weight of correct responses")
    kto_undesirable_weight: float = field(1.0, help="kto: weight of incorrect responses")
    max_length: int = field(1024, help="max tokens of prompt + response")
    overlong: Literal["error", "skip", "truncate"] = field("error", help="what to do with longer sequences")
    template: Literal["auto", "chat", "plain"] = field("auto", help="prompt format: chat template or plain text")
    system_prompt: Optional[str] = field(None, help="system message for the chat template (default: the "
                                                    "template's own; '' for an empty one, which shortens sequences)")
    step_separator: str = field("\n\n", help="joins the 'steps' of pre-split inputs")
    step_tag: str = field("auto", help="step_bce/orm: the one-token tag after each step ('auto': ' ки' as in "
                                       "Math-Shepherd where it is one token, else ' ###')")
    plus_token: str = field("+", help="step_bce/orm: the token whose probability at a tag is the step's score")
    minus_token: str = field("-", help="step_bce/orm: the token against it")
    # compatibility: accepts the former flag --dtype and config key `dtype`; warn on use in 0.2, remove in 0.3
    precision: Literal["auto", "bf16", "fp32"] = field(
        "auto", help="bf16 autocast where fast (CUDA, AMX CPUs), else fp32", aliases=("dtype",),
        hf=(Alias("bf16", type=bool, values={True: "bf16", False: "fp32"}),))
    gradient_checkpointing: bool = field(False, help="recompute activations in backward to save memory")
    share_prompts: bool = field(False, help="implicit objectives: batch the responses of one prompt together and "
                                            "compute the prompt once for all of them (same loss and gradients as "
                                            "unshared; changes the order of the updates)")
    compile: Literal["auto", "on", "off"] = field(
        "auto", help="torch.compile the decoder (dynamic shapes) after the reference pass; auto: on only for runs "
                     "long enough to pay back the compile time (core.precision.COMPILE_MIN_STEPS: 600 steps on a "
                     "CPU, where it took minutes to gain a quarter, 200 on CUDA)")
    logprob_chunk: int = field(256, help="tokens per chunk of the log-softmax, across the micro-batch")
    # compatibility: accepts the former flag --ref-cache and config key `ref_cache`; warn on use in 0.2, remove in 0.3
    logprob_cache: str = field("", help="log-prob cache file ('' = default in the cache dir, 'none' = off)",
                               aliases=("ref_cache",))
    # compatibility: accepts the former flag --ref-batch-tokens and config key `ref_batch_tokens`; warn on use in
    # 0.2, remove in 0.3
    batch_tokens: int = field(8192, help="padded tokens per batch of the reference pass", aliases=("ref_batch_tokens",))
    checkpoint_every: int = field(50, help="save a resumable checkpoint every K optimizer steps (0 = never)",
                                  hf=("save_steps",))
    keep_checkpoints: int = field(1, help="how many recent checkpoints to keep")
    save_precision: Literal["fp32", "bf16"] = field("fp32", help="dtype of the saved weights of a full fine-tune "
                                                                "(a LoRA adapter is saved as trained)")
    progress: bool = field(True, help="show progress bars")
    eval_data: Optional[str] = field(None, help="held-out labelled data (any input format and form) to evaluate on "
                                                "during training: the objective's loss and accuracy, and AUROC(min) "
                                                "for the implicit objectives")
    eval_every: int = field(0, help="evaluate on --eval-data every N optimizer steps (0: once, at the end)",
                            hf=("eval_steps",))
    report_to: Literal["none", "tensorboard", "wandb", "mlflow", "trackio", "all"] = field(
        "none", help="experiment trackers (through accelerate) that get the config once and the training log's "
                     "numbers at every step; all = every installed one")
    logging_dir: Optional[str] = field(None, help="where the trackers write (default: <output>/runs)")
    log_every: int = field(0, help="without a terminal (a log file): a progress line every N optimizer steps (0: "
                                   "every tenth of the run)", hf=("logging_steps",))

    def __post_init__(self):
        if self.eval_every and not self.eval_data:
            raise ConfigError("field 'eval_every' needs 'eval_data' (the data to evaluate on)")
        if self.max_steps is not None and self.max_steps == -1:  # TRL/HF's "no limit"
            self.max_steps = None
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"field 'max_steps' must be >= 1 (or unset / -1 for every epoch), got {self.max_steps}")
        for name in ("epochs", "batch_size", "grad_accum", "max_length", "logprob_chunk", "lora_r"):
            if getattr(self, name) < 1:
                raise ConfigError(f"field '{name}' must be >= 1, got {getattr(self, name)}")
        if self.beta <= 0:
            raise ConfigError(f"field 'beta' must be > 0, got {self.beta}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"field 'warmup_ratio' must be in [0, 1), got {self.warmup_ratio}")
        if losses.LOSSES[self.objective].kl_pairs and self.batch_size < 2:
            raise ConfigError(f"objective '{self.objective}' pairs each prompt with another response of its "
                              "micro-batch for its KL reference point: field 'batch_size' must be >= 2")
