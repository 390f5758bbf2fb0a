"""The training configuration, importable without torch (the CLI reads its defaults at start-up)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass
class TrainConfig:
    """Every knob of a training run (also written into the model card)."""

    max_seq_length: int = 192
    # text | title_text | title_path_text (distill.inputs); the section title is what the teacher saw
    # too, and it lifts type kappa +0.045 [+0.016, +0.075] (benchmarks/results/distill_ablation.json)
    input_format: str = "title_text"
    epochs: int = 3
    batch_size: int = 16
    grad_accum: int = 1
    lr: float = 5e-5  # encoder peak learning rate when fine-tuning
    fine_tune_head_lr: float = 1e-4  # heads and lexical branch while the encoder fine-tunes
    warmup_ratio: float = 0.1
    weight_decay: float = 0.05
    loss_weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # type CE, domain CE, score loss
    score_loss: str = "huber"  # or "mse"; Huber = MSE within +-huber_delta, linear beyond
    huber_delta: float = 0.5
    soft_targets: bool = True
    class_balance: bool = True  # inverse-frequency class weights (sqrt-dampened) in the cross-entropies
    seed: int = 0
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    patience: int = 2
    precision: str = "auto"  # auto | fp32 | bf16
    device: str = "auto"
    resume: bool = True
    keep_checkpoints: bool = False
    freeze_encoder: bool = False  # probe only: train the heads on the frozen encoder
    # after selection on the split, retrain on every label for the selected epochs (train.refit_on_all)
    refit_all: bool = False
    probe_first: bool = False  # True: fine-tuning starts from heads fitted on the frozen encoder (LP-FT)
    head_hidden: int = 512
    bow_dim: int = 64  # lexical branch over the wordpieces (StudentConfig.bow_dim); 0 = encoder only
    bow_mode: str = "both"  # concat | wide | both (StudentConfig.bow_mode)
    bow_bigram_buckets: int = 50_000  # hashed wordpiece-pair rows in the lexical branch (StudentConfig)
    head_epochs: int = 60
    head_lr: float = 1e-3
    head_batch_size: int = 128
    head_patience: int = 15
    # Keep the epoch with the best validation loss | headline (the sum of the five agreement metrics);
    # applies to the probe's epochs and to the fine-tuning epochs alike.
    head_select: str = "headline"
    dropout: float = 0.2
    cache_dir: str | None = None
    progress: bool = True
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_kwargs(cls, **kw) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(kw) - known
        if unknown:
            raise TypeError(f"unknown training options: {sorted(unknown)}")
        if "loss_weights" in kw:
            kw["loss_weights"] = tuple(float(w) for w in kw["loss_weights"])
        return cls(**kw)
