"""Train the multi-task student on teacher labels: `run_train` is the stage's entry point.

Two modes share one model class and one export:
- fine-tuning (default): the whole model trains with AdamW (the encoder at `lr`, the heads at
  `fine_tune_head_lr`), linear warm-up and decay, bf16 autocast where the hardware has it natively
  (else fp32), dynamic padding with length-grouped batches, gradient accumulation, per-epoch
  checkpoints and resume, early stopping and epoch selection on the validation articles, DDP under
  `torchrun`. `probe_first=True` starts it from heads fitted on the frozen encoder (LP-FT), the
  starting point then being itself a validation candidate;
- `freeze_encoder=True`: the probe alone (embed once, cached; train only the heads): seconds instead
  of hours on a CPU.
Either way the temperatures are fitted on the validation articles and the agreement with the teacher
is measured on held-out articles (the test part when there is one).
"""

from __future__ import annotations

import copy
import functools
import math
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from distill.config import TrainConfig
from distill.data import (
    LabelledSet,
    LengthGroupedSampler,
    TextDataset,
    collate,
    load_labels,
    split_by_article,
)
from distill.model import DEFAULT_BACKBONE, StudentModel, resolve_backbone


def select_device(device: str = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    if os.environ.get("LOCAL_RANK") is not None and torch.cuda.is_available():
        return torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def select_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training (None: fp32). `auto` is bf16 where bf16 matmuls are native, else fp32.

    Native: CUDA GPUs that support bf16, and CPUs with AVX512-BF16/AMX (`distill.inference.native_bf16`,
    which `BIOMED_ENRICH_NATIVE_BF16=0|1` overrides; the tests pin it to 0 so every CPU trains the same
    numbers). Elsewhere bf16 autocast is emulated (~8x slower), so `auto` stays fp32; `fp32` turns bf16
    off, `bf16` forces it anywhere. bf16 autocast keeps fp32 master weights and fp32 losses.
    """
    from distill.inference import native_bf16

    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    return torch.bfloat16 if native_bf16(device) else None


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def multitask_loss(
    out,
    batch: dict,
    weights=(1.0, 1.0, 1.0),
    class_weights: dict[str, torch.Tensor] | None = None,
    score_loss: str = "mse",
    huber_delta: float = 0.5,
) -> tuple[torch.Tensor, dict[str, float]]:
    """CE(type) + CE(domain) + MSE(score), weighted and summed; soft teacher targets when given.

    `class_weights` (per head, one weight per class) re-weights the cross-entropies, e.g. to favour
    macro-F1 over accuracy on rare classes; not on rows whose `distilled` flag is set in `batch`: a
    trained student's outputs already carry its class weighting, and weighting them again shifts the
    variant's decisions towards the rare classes. `score_loss="huber"` uses 2 x Huber(`huber_delta`) for the
    score: equal to the MSE for errors within the delta, linear beyond, so a few teacher scores far from
    the text's cues do not dominate the score head.
    """
    if score_loss not in ("mse", "huber"):
        raise ValueError(f"score_loss must be mse or huber, not {score_loss!r}")
    class_weights = class_weights or {}

    def ce(head, logits):
        logits, hard = logits.float(), batch[head]
        soft = batch.get(f"{head}_probs")
        if soft is None:
            soft = F.one_hot(hard, logits.shape[-1]).float()
        w = class_weights.get(head)
        if w is None:
            return -(soft * F.log_softmax(logits, dim=-1)).sum(-1).mean()
        w = w.to(logits.device)
        if "distilled" in batch:
            w = torch.where(batch["distilled"].to(logits.device)[:, None], torch.ones_like(w), w)
        return -(w * soft * F.log_softmax(logits, dim=-1)).sum() / (w * soft).sum()

    parts = {
        "document_type": ce("document_type", out.document_type_logits),
        "domain": ce("domain", out.domain_logits),
        "educational_score": F.mse_loss(out.educational_score.float(), batch["educational_score"])
        if score_loss == "mse"
        else 2 * F.huber_loss(out.educational_score.float(), batch["educational_score"], delta=huber_delta),
    }
    loss = sum(w * p for w, p in zip(weights, parts.values(), strict=True))
    return loss, {k: float(v.detach()) for k, v in parts.items()}


def targets(data: LabelledSet, soft: bool = True) -> dict[str, torch.Tensor]:
    """Target tensors of a LabelledSet (as a batch dict)."""
    t = {
        "document_type": torch.as_tensor(data.document_type),
        "domain": torch.as_tensor(data.domain),
        "educational_score": torch.as_tensor(data.educational_score, dtype=torch.float32),
    }
    if soft and data.document_type_probs is not None:
        t["document_type_probs"] = torch.as_tensor(data.document_type_probs)
    if soft and data.domain_probs is not None:
        t["domain_probs"] = torch.as_tensor(data.domain_probs)
    if data.distilled is not None:
        t["distilled"] = torch.as_tensor(data.distilled, dtype=torch.bool)
    return t


def balanced_class_weights(data: LabelledSet, config) -> dict[str, torch.Tensor]:
    """Per-head class weights ~ 1/sqrt(frequency), normalised to mean 1 over the training rows.

    One weight per label of `config` (a StudentConfig), also for labels absent from `data`; counted on
    the teacher's rows only (not the `distilled` ones, which the loss does not weight)."""
    out = {}
    teacher = ~data.is_distilled()
    for head in ("document_type", "domain"):
        k = len(getattr(config, f"{head}_labels"))
        y = np.asarray(getattr(data, head))[teacher]
        counts = np.bincount(y, minlength=int(k)).astype(np.float64)
        w = 1.0 / np.sqrt(np.maximum(counts, 1.0))
        w = w / (w[y].mean() if len(y) else 1.0)
        out[head] = torch.tensor(w, dtype=torch.float32)
    return out


def _heads_state(model: StudentModel) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("encoder.")}


Tokens = tuple[torch.Tensor, torch.Tensor]  # (input_ids, attention_mask), [n, length] each


def tokenize_for_heads(tokenizer, texts: list[str], max_length: int) -> Tokens:
    """Token ids and mask of `texts` as the encoder sees them (the lexical branch's input when the
    encoder is frozen: tokenising is cheap, so these are not cached)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


def _heads(model: StudentModel, pooled: torch.Tensor, tokens: Tokens | None, idx=None):
    """The heads on pooled vectors, with the lexical branch fed from `tokens` when the model has one."""
    if getattr(model, "bow", None) is None:
        return model.heads(pooled)
    if tokens is None:
        raise ValueError("this student has a lexical branch (bow_dim > 0): pass the token ids (`tokens`)")
    ids, mask = tokens if idx is None else (tokens[0][idx], tokens[1][idx])
    return model.heads(pooled, model.lexical(ids.to(pooled.device), mask.to(pooled.device)))


@torch.no_grad()
def head_outputs(
    model: StudentModel, embeddings: torch.Tensor, batch_size: int = 1024, tokens: Tokens | None = None
) -> dict[str, np.ndarray]:
    """Raw head outputs on cached pooled embeddings (eval mode), as numpy arrays.

    `tokens` ((input_ids, attention_mask), e.g. `tokenize_for_heads`) feed the lexical branch, if any.
    """
    was = model.training
    model.eval()
    parts = {"document_type_logits": [], "domain_logits": [], "educational_score": []}
    for s in range(0, len(embeddings), batch_size):
        sl = slice(s, s + batch_size)
        out = _heads(model, embeddings[sl].to(model.device), tokens, sl)
        for k in parts:
            parts[k].append(getattr(out, k).float().cpu().numpy())
    model.train(was)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _single_threaded(fn):
    """Run `fn` on one torch thread: the heads are too small to gain from threads, and on a shared
    CPU threads only contend."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


def _heads_epoch(model, x, y, tokens, opt, gen, batch_size: int, losses: tuple) -> float:
    """One shuffled pass of head training over the embeddings `x`; returns the mean train loss.

    `losses` = (loss weights, class weights, score loss, Huber delta), as `multitask_loss` takes them.
    """
    model.train()
    total = 0.0
    for idx in torch.randperm(len(x), generator=gen).split(batch_size):
        out = _heads(model, x[idx], tokens, idx)
        loss, _ = multitask_loss(out, {k: v[idx] for k, v in y.items()}, *losses)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += float(loss.detach()) * len(idx)
    return total / max(1, len(x))


@_single_threaded
def fit_heads(
    model: StudentModel,
    embeddings: torch.Tensor,
    data: LabelledSet,
    *,
    valid: tuple | None = None,
    epochs: int = 200,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    batch_size: int = 128,
    loss_weights=(1.0, 1.0, 1.0),
    soft_targets: bool = True,
    class_weights: dict[str, torch.Tensor] | None = None,
    patience: int = 20,
    seed: int = 0,
    progress: bool = False,
    tokens: Tokens | None = None,
    select: str = "loss",
    score_loss: str = "mse",
    huber_delta: float = 0.5,
) -> dict:
    """Train only the heads of `model` (in place) on pooled embeddings of `data`.

    With a lexical branch (`bow_dim > 0`), `tokens` (input_ids, attention_mask of `data`) feed it and it
    trains jointly with the heads; `valid` is then (embeddings, data, tokens). `select="headline"` keeps
    the epoch with the best sum of the validation headline metrics (`validation_headline`) instead of
    the lowest validation loss: the loss favours calibration, the release favours the argmax and score.

    AdamW with cosine decay; with `valid`, keeps the heads of the epoch with the lowest validation
    loss and stops after `patience` epochs without improvement. Returns the loss history.
    """
    if select not in ("loss", "headline"):
        raise ValueError(f"select must be loss or headline, not {select!r}")
    seed_everything(seed)
    head_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    opt = torch.optim.AdamW(head_params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    y = targets(data, soft_targets)
    x = embeddings.float()
    if valid is not None:
        vx, vy = valid[0].float(), targets(valid[1], soft_targets)
        vtokens = valid[2] if len(valid) > 2 else None
    gen = torch.Generator().manual_seed(seed)
    history, best, best_state, bad = [], math.inf, None, 0
    for epoch in tqdm(range(epochs), desc="heads", disable=not progress):
        losses = (loss_weights, class_weights, score_loss, huber_delta)
        record = {
            "epoch": epoch,
            "train_loss": _heads_epoch(model, x, y, tokens, opt, gen, batch_size, losses),
        }
        sched.step()
        if valid is not None:
            model.eval()
            with torch.no_grad():
                vloss, parts = multitask_loss(
                    _heads(model, vx, vtokens),
                    vy,
                    loss_weights,
                    score_loss=score_loss,
                    huber_delta=huber_delta,
                )
            record.update(valid_loss=float(vloss), **{f"valid_{k}": v for k, v in parts.items()})
            crit = float(vloss) if select == "loss" else -validation_headline(model, vx, valid[1], vtokens)
            record["valid_criterion"] = crit
            if crit < best - 1e-4:
                best, best_state, bad = crit, _heads_state(model), 0
            else:
                bad += 1
        history.append(record)
        if valid is not None and bad >= patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.eval()
    return {
        "history": history,
        "epochs_run": len(history),
        "best_valid_criterion": None if best_state is None else best,
    }


def headline_criterion(raw: dict[str, np.ndarray], data: LabelledSet, config) -> float:
    """type F1 + type kappa + domain F1 + score r - score MAE of raw head outputs on `data` (higher is
    better): what early stopping and checkpoint selection maximise with `head_select="headline"`."""
    from distill.evaluate import evaluate_outputs
    from distill.metrics import headline

    h = {k: 0.0 if np.isnan(v) else v for k, v in headline(evaluate_outputs(raw, data, config)).items()}
    return (
        h["document_type_f1"]
        + h["document_type_kappa"]
        + h["domain_f1"]
        + h["educational_score_pearson"]
        - h["educational_score_mae"]
    )


def validation_headline(model: StudentModel, x: torch.Tensor, data: LabelledSet, tokens=None) -> float:
    """`headline_criterion` of the heads on cached embeddings `x` of `data`."""
    return headline_criterion(head_outputs(model, x, tokens=tokens), data, model.config)


def _dist_info() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


@torch.no_grad()
def validation_loss(model, loader, device, autocast_dtype, weights) -> float:
    model.eval()
    total, n = 0.0, 0
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(
            device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None
        ):
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss, _ = multitask_loss(out, batch, weights)
        total += float(loss) * len(batch["input_ids"])
        n += len(batch["input_ids"])
    model.train()
    return total / max(1, n)


def _prepare_device(model: StudentModel, cfg: TrainConfig):
    """(rank, world size, device, autocast dtype, the module to call: DDP-wrapped when distributed)."""
    import torch.distributed as dist

    rank, world = _dist_info()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = select_device(cfg.device)
    amp = select_precision(cfg.precision, device)
    seed_everything(cfg.seed)
    model.to(device).train()
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return rank, world, device, amp, net


def _loaders(
    train: LabelledSet, valid: LabelledSet | None, tokenizer, cfg: TrainConfig, rank: int, world: int
):
    """(length-grouped train sampler, train loader, validation loader or None)."""
    from torch.utils.data import DataLoader

    pad = tokenizer.pad_token_id or 0
    train_ds = TextDataset(train, tokenizer, cfg.max_seq_length, soft_targets=cfg.soft_targets)
    sampler = LengthGroupedSampler(
        train_ds.lengths(), cfg.batch_size, seed=cfg.seed, rank=rank, num_replicas=world
    )
    loader = DataLoader(train_ds, batch_sampler=sampler, collate_fn=lambda b: collate(b, pad))
    valid_loader = None
    if valid is not None and len(valid):
        valid_ds = TextDataset(valid, tokenizer, cfg.max_seq_length, soft_targets=cfg.soft_targets)
        valid_loader = DataLoader(
            valid_ds,
            batch_sampler=LengthGroupedSampler(valid_ds.lengths(), cfg.batch_size * 2, shuffle=False),
            collate_fn=lambda b: collate(b, pad),
        )
    return sampler, loader, valid_loader


def _optimizer(model: StudentModel, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW: the encoder at `cfg.lr`, the heads at `fine_tune_head_lr`; no decay on biases and norms."""
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    groups = {}  # (encoder?, decayed?) -> params
    for n, p in model.named_parameters():
        groups.setdefault((n.startswith("encoder."), not any(k in n for k in no_decay)), []).append(p)
    return torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": cfg.lr if encoder else cfg.fine_tune_head_lr,
                "weight_decay": cfg.weight_decay if decayed else 0.0,
            }
            for (encoder, decayed), params in groups.items()
        ]
    )


def _resume(state_path: Path, model: StudentModel, opt, sched, device) -> tuple[int, float, int, list]:
    """(first epoch, best criterion, epochs without gain, history) from the checkpoint, restored in place."""
    state = torch.load(state_path, map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    return state["epoch"] + 1, state["best"], state["bad"], state["history"]


def _save_state(
    state_path: Path, model: StudentModel, opt, sched, epoch: int, best: float, bad: int, history
):
    """The resumable state after `epoch`, written atomically (a kill mid-write keeps the previous one)."""
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": epoch,
        "best": best,
        "bad": bad,
        "history": history,
        "rng": torch.get_rng_state(),
    }
    torch.save(state, state_path.with_suffix(".tmp"))
    state_path.with_suffix(".tmp").replace(state_path)


def _train_epoch(net, model, loader, opt, sched, cfg: TrainConfig, device, amp, class_weights, bar) -> float:
    """One pass over `loader` with gradient accumulation and clipping; returns the mean train loss."""
    running, seen = 0.0, 0
    for step, batch in enumerate(bar):
        batch = {k: v.to(device) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            out = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        loss, _ = multitask_loss(out, batch, cfg.loss_weights, class_weights, cfg.score_loss, cfg.huber_delta)
        (loss / cfg.grad_accum).backward()
        if (step + 1) % cfg.grad_accum == 0 or step + 1 == len(loader):
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
        running += float(loss.detach())
        seen += 1
        bar.set_postfix(loss=f"{running / seen:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
    return running / max(1, seen)


def _broadcast_stop(stop: bool, device) -> bool:
    """Rank 0's early-stopping decision, shared with every rank."""
    import torch.distributed as dist

    flag = torch.tensor([int(stop)], device=device)
    dist.broadcast(flag, 0)
    return bool(flag.item())


def train_encoder(
    model: StudentModel,
    tokenizer,
    train: LabelledSet,
    valid: LabelledSet | None,
    cfg: TrainConfig,
    workdir: str,
) -> dict:
    """Full fine-tuning loop (module docstring); checkpoints to and resumes from `<workdir>/checkpoint/`."""
    from transformers import get_linear_schedule_with_warmup

    rank, world, device, amp, net = _prepare_device(model, cfg)
    class_weights = balanced_class_weights(train, model.config) if cfg.class_balance else None
    sampler, loader, valid_loader = _loaders(train, valid, tokenizer, cfg, rank, world)
    opt = _optimizer(model, cfg)

    def criterion() -> float:
        """Validation criterion of the current weights (lower is better), per `cfg.head_select`."""
        if cfg.head_select == "loss":
            return validation_loss(model, valid_loader, device, amp, cfg.loss_weights)
        from distill.predict import predict_logits

        raw = predict_logits(model, tokenizer, valid.texts, batch_size=cfg.batch_size * 2)
        return -headline_criterion(raw, valid, model.config)

    steps_per_epoch = math.ceil(len(sampler) / cfg.grad_accum)
    total_steps = max(1, steps_per_epoch * cfg.epochs)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total_steps), total_steps)

    ckpt_dir = Path(workdir) / "checkpoint"
    state_path, best_path = ckpt_dir / "state.pt", ckpt_dir / "best.pt"
    start_epoch, best, bad, history = 0, math.inf, 0, []
    if cfg.resume and state_path.exists():
        start_epoch, best, bad, history = _resume(state_path, model, opt, sched, device)
    if start_epoch == 0 and rank == 0 and valid_loader is not None:
        # The starting point (e.g. the probe's heads) is the first candidate: keep it unless beaten.
        best = criterion()
        history.append({"epoch": -1, "valid_criterion": best})
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), best_path)

    stop = False
    for epoch in range(start_epoch, cfg.epochs):
        if stop:
            break
        sampler.set_epoch(epoch)
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not cfg.progress or rank != 0)
        record = {
            "epoch": epoch,
            "train_loss": _train_epoch(net, model, loader, opt, sched, cfg, device, amp, class_weights, bar),
        }
        if rank == 0:
            if valid_loader is not None:
                crit = criterion()
                record["valid_criterion"] = crit
                if crit < best - 1e-4:
                    best, bad = crit, 0
                    ckpt_dir.mkdir(parents=True, exist_ok=True)
                    torch.save(model.state_dict(), best_path)
                else:
                    bad += 1
                stop = bad >= cfg.patience
            history.append(record)
            _save_state(state_path, model, opt, sched, epoch, best, bad, history)
        if world > 1:
            stop = _broadcast_stop(stop, device)
    if best_path.exists():
        model.load_state_dict(torch.load(best_path, map_location=device, weights_only=True))
    model.eval()
    return {
        "history": history,
        "epochs_run": sum(1 for r in history if r["epoch"] >= 0),
        "best_valid_criterion": None if math.isinf(best) else best,
    }


def default_cache_dir() -> str:
    return os.environ.get("BIOMED_ENRICH_CACHE", str(Path.home() / ".cache" / "biomed-enrich"))


def fit_probe(
    model: StudentModel,
    tokenizer,
    train: LabelledSet,
    valid: LabelledSet,
    test: LabelledSet,
    cfg: TrainConfig,
) -> tuple[dict, dict | None, dict | None]:
    """Fit the heads (and lexical branch) on the frozen encoder's cached embeddings of `train`.

    Returns the fit record and the raw head outputs on `valid` and on the held-out part (`test`, or
    `valid` when there is no test part).
    """
    from distill.frozen import EmbeddingCache

    t0 = time.time()
    model.to(select_device(cfg.device))
    cache = EmbeddingCache(cfg.cache_dir or default_cache_dir(), model.config.backbone, cfg.max_seq_length)

    def embed(d: LabelledSet) -> torch.Tensor | None:
        return cache.embed(model, tokenizer, d.texts, progress=cfg.progress) if len(d) else None

    def tok(d: LabelledSet) -> Tokens | None:
        return tokenize_for_heads(tokenizer, d.texts, cfg.max_seq_length) if cfg.bow_dim and len(d) else None

    emb_train, emb_valid, emb_test = embed(train), embed(valid), embed(test)
    embed_seconds = time.time() - t0
    tok_train, tok_valid, tok_test = tok(train), tok(valid), tok(test)
    fit = fit_heads(
        model,
        emb_train,
        train,
        tokens=tok_train,
        select=cfg.head_select,
        valid=(emb_valid, valid, tok_valid) if emb_valid is not None else None,
        epochs=cfg.head_epochs,
        lr=cfg.head_lr,
        weight_decay=cfg.weight_decay,
        batch_size=cfg.head_batch_size,
        loss_weights=cfg.loss_weights,
        score_loss=cfg.score_loss,
        huber_delta=cfg.huber_delta,
        soft_targets=cfg.soft_targets,
        class_weights=balanced_class_weights(train, model.config) if cfg.class_balance else None,
        patience=cfg.head_patience,
        seed=cfg.seed,
        progress=cfg.progress,
    )
    fit["embed_seconds"] = embed_seconds
    valid_raw = head_outputs(model, emb_valid, tokens=tok_valid) if emb_valid is not None else None
    held_raw = head_outputs(model, emb_test, tokens=tok_test) if emb_test is not None else valid_raw
    return fit, valid_raw, held_raw


def split_labels(data, cfg: TrainConfig) -> tuple[LabelledSet, LabelledSet, LabelledSet]:
    """(train, validation, test) parts of the labelled set, split by article."""
    train_idx, valid_idx, test_idx = split_by_article(
        data.articles, valid_fraction=cfg.valid_fraction, test_fraction=cfg.test_fraction, seed=cfg.seed
    )
    if len(train_idx) == 0:
        raise ValueError("the split left no training articles; lower valid_fraction/test_fraction")
    return data.subset(train_idx), data.subset(valid_idx), data.subset(test_idx)


def new_student(backbone: str, cfg: TrainConfig) -> tuple:
    """(tokenizer, a fresh student on `backbone`) shaped by `cfg`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(backbone))
    model = StudentModel.from_backbone(
        backbone,
        max_seq_length=cfg.max_seq_length,
        head_hidden=cfg.head_hidden,
        dropout=cfg.dropout,
        bow_dim=cfg.bow_dim,
        bow_mode=cfg.bow_mode,
        bow_bigram_buckets=cfg.bow_bigram_buckets,
        input_format=cfg.input_format,
        bow_ignore_ids=sorted(set(tokenizer.all_special_ids)),
    )
    return tokenizer, model


def fine_tune(model, tokenizer, parts, probe_fit: dict, probe_raw, cfg: TrainConfig, workdir: Path):
    """Fine-tune the encoder (after the probe, if any); returns (fit, valid_raw, held_raw), or None
    on ranks other than 0 (only rank 0 evaluates and exports)."""
    from distill.evaluate import evaluate_outputs
    from distill.metrics import headline
    from distill.predict import predict_logits

    train, valid, test = parts
    probe = None
    if probe_fit and probe_raw is not None:  # the probe's own held-out headline: what fine-tuning added
        probe = {k: v for k, v in probe_fit.items() if k != "history"}
        probe["headline"] = headline(evaluate_outputs(probe_raw, test if len(test) else valid, model.config))
    fit = train_encoder(model, tokenizer, train, valid if len(valid) else None, cfg, str(workdir))
    if _dist_info()[0] != 0:
        return None
    fit["probe"] = probe
    model.to("cpu")
    valid_raw = predict_logits(model, tokenizer, valid.texts, batch_size=64) if len(valid) else None
    held_raw = valid_raw if not len(test) else predict_logits(model, tokenizer, test.texts, batch_size=64)
    return fit, valid_raw, held_raw


def calibrate_and_evaluate(model, valid: LabelledSet, valid_raw, held_out: LabelledSet, held_raw) -> tuple:
    """Fit the class heads' temperatures on `valid`; (metrics after, metrics before) on `held_out`."""
    from distill.calibrate import fit_temperatures
    from distill.evaluate import evaluate_outputs

    uncalibrated = dict(model.config.temperatures)
    if valid_raw is not None:
        model.config.temperatures = fit_temperatures(
            {"document_type": valid_raw["document_type_logits"], "domain": valid_raw["domain_logits"]},
            {"document_type": valid.document_type, "domain": valid.domain},
        )
    before = evaluate_outputs(held_raw, held_out, model.config, temperatures=uncalibrated)
    after = evaluate_outputs(held_raw, held_out, model.config)
    return after, before


def train_summary(
    labels, backbone, cfg: TrainConfig, data, parts, model, metrics, fit, train_seconds
) -> dict:
    """What `run_train` returns and exports beside the model (sizes, config, metrics, fit history)."""
    train, valid, test = parts
    held_out = test if len(test) else valid
    after, before = metrics
    mode = (
        "frozen_encoder"
        if cfg.freeze_encoder
        else ("probe_then_fine_tune" if cfg.probe_first else "fine_tune")
    )
    return {
        "labels": list(labels),
        "backbone": backbone,
        "mode": mode,
        "config": {k: v for k, v in asdict(cfg).items() if k != "extra"},
        "data": data.stats(),
        "sizes": {
            "train": len(train),
            "validation": len(valid),
            "test": len(test),
            "held_out": len(held_out),
        },
        "articles": {
            "train": len(set(train.articles)),
            "validation": len(set(valid.articles)),
            "test": len(set(test.articles)),
        },
        "held_out_part": "test" if len(test) else "validation",
        "teacher_models": data.teacher_models,
        "prompt_versions": data.prompt_versions,
        "temperatures": model.config.temperatures,
        "metrics": after,
        "metrics_uncalibrated": before,
        "fit": {k: v for k, v in fit.items() if k != "history"},
        "history": fit.get("history", []),
        "train_seconds": train_seconds,
    }


def run_train(
    labels: list[str],
    output: str,
    *,
    paragraphs: list[str] | None = None,
    backbone: str = DEFAULT_BACKBONE,
    **kw,
) -> dict:
    """Train a student on teacher labels and export it to `output` (model, tokenizer, card, agreement.json).

    Options are the fields of `TrainConfig`. Returns a summary (sizes, skipped rows, metrics, timings).
    """
    from distill.export import export_student

    cfg = TrainConfig.from_kwargs(**kw)
    started = time.time()
    data = load_labels(labels, paragraphs, input_format=cfg.input_format)
    if len(data) == 0:
        raise ValueError(f"no usable labelled paragraphs in {labels}: {data.stats()}")
    parts = train, valid, test = split_labels(data, cfg)
    held_out = test if len(test) else valid

    seed_everything(cfg.seed)
    tokenizer, model = new_student(backbone, cfg)
    workdir = Path(output)
    workdir.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    trained = train_parts(model, tokenizer, parts, cfg, workdir)
    if trained is None:
        return {"rank": _dist_info()[0]}
    fit, probe_fit, valid_raw, held_raw = trained
    train_seconds = time.time() - t0

    metrics = calibrate_and_evaluate(model, valid, valid_raw, held_out, held_raw)
    summary = train_summary(labels, backbone, cfg, data, parts, model, metrics, fit, train_seconds)
    if cfg.refit_all and len(valid):
        refit = refit_on_all(data, backbone, cfg, fit, probe_fit, model.config.temperatures, workdir)
        if refit is None:
            return {"rank": _dist_info()[0]}
        (tokenizer, model), summary["refit"] = refit
    export_student(model, tokenizer, str(workdir), summary)
    if not cfg.keep_checkpoints:
        shutil.rmtree(workdir / "checkpoint", ignore_errors=True)
    summary["seconds"] = time.time() - started
    return summary


def train_parts(model, tokenizer, parts, cfg: TrainConfig, workdir: Path):
    """Probe and/or fine-tune `model` in place on (train, valid, test): (fit, probe fit or {}, valid
    outputs, held-out outputs), or None on ranks other than 0."""
    train, valid, test = parts
    resuming = cfg.resume and (workdir / "checkpoint" / "state.pt").exists()
    fit, valid_raw, held_raw = {}, None, None
    if cfg.freeze_encoder or (cfg.probe_first and not resuming):
        fit, valid_raw, held_raw = fit_probe(model, tokenizer, train, valid, test, cfg)
    probe_fit = fit
    if not cfg.freeze_encoder:
        tuned = fine_tune(model, tokenizer, parts, fit, held_raw, cfg, workdir)
        if tuned is None:
            return None
        fit, valid_raw, held_raw = tuned
    model.to("cpu")
    return fit, probe_fit, valid_raw, held_raw


def selected_epochs(fit: dict) -> int | None:
    """Epochs up to the one validation selected (0: the starting point won); None without validation."""
    scored = [r for r in fit.get("history", []) if "valid_criterion" in r]
    return min(scored, key=lambda r: r["valid_criterion"])["epoch"] + 1 if scored else None


def refit_on_all(data, backbone, cfg: TrainConfig, fit: dict, probe_fit: dict, temperatures, workdir: Path):
    """The same recipe retrained on every label for the epochs the split run selected.

    No validation articles are left to select on, so the epoch counts, temperatures and the agreement
    figures are the split run's, whose model was trained without its held-out articles: they estimate
    this model's agreement (slightly pessimistically: it sees more labels). Returns ((tokenizer, model),
    record), or None on ranks other than 0.
    """
    started = time.time()
    head_epochs = selected_epochs(probe_fit) or cfg.head_epochs
    epochs = 0 if cfg.freeze_encoder else selected_epochs(fit)
    rcfg = replace(
        cfg,
        valid_fraction=0.0,
        test_fraction=0.0,
        head_epochs=max(1, head_epochs),
        epochs=max(1, epochs or 0),
        # a fine-tune that never beat its probe refits as the probe
        freeze_encoder=cfg.freeze_encoder or (epochs == 0 and cfg.probe_first),
        refit_all=False,
    )
    seed_everything(cfg.seed)
    tokenizer, model = new_student(backbone, rcfg)
    none = data.subset([])
    if train_parts(model, tokenizer, (data, none, none), rcfg, workdir / "refit") is None:
        return None
    model.config.temperatures = dict(temperatures)
    shutil.rmtree(workdir / "refit", ignore_errors=True)
    record = {
        "paragraphs": len(data),
        "articles": len(set(data.articles)),
        "mode": "frozen_encoder" if rcfg.freeze_encoder else "fine_tune",
        "head_epochs": rcfg.head_epochs if rcfg.freeze_encoder or rcfg.probe_first else None,
        "epochs": None if rcfg.freeze_encoder else rcfg.epochs,
        "seconds": time.time() - started,
        "agreement": "measured on the held-out articles of the split run (same recipe, trained without them)",
    }
    return (tokenizer, model), record


def copy_model(model: StudentModel) -> StudentModel:
    """A deep copy (for callers that retrain heads many times from the same starting point)."""
    return copy.deepcopy(model)
