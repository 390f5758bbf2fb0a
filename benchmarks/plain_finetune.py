"""Baseline: the plain fine-tune of issue 16, on the release article split, validation metrics only.

Mean-pooled MiniLM-L6, three linear heads, CE + CE + MSE summed on hard labels, AdamW lr 5e-5
(torch defaults otherwise), batch 16 in random order, 3 epochs, 10% linear warm-up then linear
decay, 192 tokens, input `section_title + " | " + text`, bf16 autocast only on a CPU with native
bf16 (AVX512-BF16/AMX; fp32 otherwise): nothing else. It trains on the train part of the release
split (`split_by_article(..., valid_fraction=0.1, test_fraction=0.2, seed=1)`) and reports the
validation headline after each epoch; the test part is left for the once-per-release evaluation.

    nice -n 19 python benchmarks/plain_finetune.py [--input-format text] [--max-length 256] [--out X.json]

Writes `--out` (per-epoch validation metrics, timing, CPU flags, load, split, input length
statistics) and, beside it, a .npz of the raw validation outputs per epoch (paired bootstraps against
later models need no retraining). Checkpoints go to `--workdir` every `--save-minutes` and at each
epoch's end; a rerun with the same options continues at the batch where the last one stopped.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from cpu import cpu_info  # noqa: E402  (benchmarks/cpu.py: the CPU record every benchmark writes)

from distill.data import RELEASE_SPLIT  # noqa: E402  (the project's article split)

LABELS = ROOT.parent / "shared" / "data" / "labels" / "teacher_labels_v2.parquet"
FORMATS = {
    "text": lambda r: r["text"],
    "title_text": lambda r: f"{r['section_title'] or ''} | {r['text']}",
    "title_path_text": lambda r: f"{r['section_title'] or ''} | {r['path'] or ''} | {r['text']}",
}


def last_epoch_outputs(npz: str | Path, ids: list[str]) -> tuple[int, dict]:
    """(last epoch, its raw outputs on `ids` in that order) from the .npz this benchmark writes: the
    plain fine-tune's answers as other benchmarks compare them (no selection, no temperatures)."""
    import numpy as np

    arrays = np.load(npz)
    last = max(int(k[5:].split("_")[0]) for k in arrays.files if k.startswith("epoch"))
    where = {i: k for k, i in enumerate(arrays["ids"].tolist())}
    order = np.array([where[i] for i in ids])
    keys = ("document_type_logits", "domain_logits", "educational_score")
    return last, {k: arrays[f"epoch{last}_{k}"][order] for k in keys}


def run_options(args) -> dict:
    """The options a run's results depend on (not where it writes, how often it saves, how many threads)."""
    return {k: v for k, v in vars(args).items() if k not in ("out", "workdir", "save_minutes", "threads")}


def length_stats(tokenizer, texts: list[str]) -> dict:
    """Wordpiece lengths (with [CLS]/[SEP]) and the share of inputs cut at common max lengths."""
    import numpy as np

    n = np.array([len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]])
    return {
        "mean": float(n.mean()),
        "p50": float(np.percentile(n, 50)),
        "p90": float(np.percentile(n, 90)),
        "p99": float(np.percentile(n, 99)),
        "truncated_share": {str(m): float((n > m).mean()) for m in (128, 192, 256, 512)},
    }


def label_counts(data, labels: dict[str, list[str]]) -> dict:
    out = {h: dict(Counter(names[i] for i in getattr(data, h))) for h, names in labels.items()}
    out["educational_score"] = {str(int(k)): v for k, v in sorted(Counter(data.educational_score).items())}
    return out


def plain_finetune(model, tokenizer, train_ds, valid, args, amp, workdir: Path, report) -> None:
    """The recipe's loop, checkpointed every `args.save_minutes` and at each epoch's end (a rerun resumes
    at the batch it stopped at: the batch order is a function of the seed and the epoch). After each
    epoch `report(epoch, steps done, counters, raw validation outputs)`, after a mid-epoch checkpoint
    the same without outputs; the counters (wall and CPU seconds, tokens) sum over resumed runs."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm
    from transformers import get_linear_schedule_with_warmup

    from distill.data import collate
    from distill.predict import predict_logits
    from distill.train import multitask_loss

    steps = math.ceil(len(train_ds) / args.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    sched = get_linear_schedule_with_warmup(opt, int(0.1 * steps * args.epochs), steps * args.epochs)
    state_path, start, done, counters = workdir / "state.pt", 0, 0, {}
    if state_path.exists():
        state = torch.load(state_path, weights_only=False)
        if state["options"] != run_options(args):
            raise SystemExit(
                f"{state_path} was written with other options: {state['options']}; use --workdir"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start, done, counters = state["epoch"], state["step"], state["counters"]
        if done == steps:
            start, done, counters = start + 1, 0, {}
        print(f"resuming at epoch {start + 1}, batch {done} from {state_path}", file=sys.stderr)

    def save(epoch: int, step: int, counters: dict) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
        state.update(
            epoch=epoch, step=step, counters=counters, rng=torch.get_rng_state(), options=run_options(args)
        )
        torch.save(state, state_path.with_suffix(".tmp"))
        state_path.with_suffix(".tmp").replace(state_path)

    pad = functools.partial(collate, pad_token_id=tokenizer.pad_token_id or 0)
    for epoch in range(start, args.epochs):
        order = torch.Generator().manual_seed(args.seed + epoch)
        loader = DataLoader(train_ds, args.batch_size, shuffle=True, generator=order, collate_fn=pad)
        c = {"seconds": 0.0, "cpu_seconds": 0.0, "tokens": 0, **counters}
        wall, cpu, saved = time.time(), time.process_time(), time.time()
        batches = itertools.islice(loader, done, None)
        bar = tqdm(
            batches, desc=f"epoch {epoch + 1}/{args.epochs}", initial=done, total=steps, mininterval=10
        )
        model.train()
        for step, batch in enumerate(bar, start=done + 1):
            with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            loss, _ = multitask_loss(out, batch, score_loss="mse")
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad()
            c["tokens"] += int(batch["attention_mask"].sum())
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
            if time.time() - saved > 60 * args.save_minutes or step == steps:
                c["seconds"] += time.time() - wall
                c["cpu_seconds"] += time.process_time() - cpu
                wall, cpu, saved = time.time(), time.process_time(), time.time()
                if step < steps:
                    save(epoch, step, c)
                    report(epoch, step, c)
        report(epoch, steps, c, predict_logits(model, tokenizer, valid.texts, batch_size=64))
        save(epoch, steps, c)
        done, counters = 0, {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", default=str(LABELS), help="teacher labels (default: v2)")
    parser.add_argument("--input-format", choices=sorted(FORMATS), default="title_text")
    parser.add_argument("--max-length", type=int, default=192, help="wordpieces kept per input")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "plain_finetune.json"))
    parser.add_argument("--workdir", help="checkpoints (default: the cache dir, named after --out)")
    parser.add_argument("--save-minutes", type=float, default=10, help="checkpoint interval within an epoch")
    args = parser.parse_args()

    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from distill.data import TextDataset, load_labels, split_by_article
    from distill.evaluate import evaluate_outputs
    from distill.inference import native_bf16
    from distill.metrics import headline
    from distill.model import DEFAULT_BACKBONE, StudentModel, resolve_backbone
    from distill.train import default_cache_dir, seed_everything
    from pipelines.core.io import read_table
    from pipelines.core.schemas import DOCUMENT_TYPE_LABELS, DOMAIN_LABELS

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    workdir = Path(args.workdir or Path(default_cache_dir()) / "plain_finetune" / out.stem)
    data = load_labels([args.labels])
    rows = {r["id"]: r for r in read_table([args.labels]).to_pylist()}
    tokenizer = AutoTokenizer.from_pretrained(resolve_backbone(DEFAULT_BACKBONE))
    inputs = {f: [fmt(rows[i]) for i in data.ids] for f, fmt in FORMATS.items()}
    data = replace(data, texts=inputs[args.input_format])
    parts = dict(
        zip(("train", "validation", "test"), split_by_article(data.articles, **RELEASE_SPLIT), strict=True)
    )
    train, valid = data.subset(parts["train"]), data.subset(parts["validation"])
    names = {"document_type": list(DOCUMENT_TYPE_LABELS), "domain": list(DOMAIN_LABELS)}

    seed_everything(args.seed)
    model = StudentModel.from_backbone(
        DEFAULT_BACKBONE, max_seq_length=args.max_length, head_hidden=0, bow_dim=0
    )
    amp = torch.bfloat16 if native_bf16(torch.device("cpu")) else None
    train_ds = TextDataset(train, tokenizer, args.max_length, soft_targets=False)
    result = {
        "recipe": "plain fine-tune (issue 16): mean-pooled MiniLM-L6, 3 linear heads, CE+CE+MSE, hard labels",
        "options": run_options(args),
        "labels": args.labels,
        "split": {
            **RELEASE_SPLIT,
            **{
                p: {"paragraphs": len(ix), "articles": len({data.articles[i] for i in ix})}
                for p, ix in parts.items()
            },
            "evaluated": "validation only (test kept for the once-per-release evaluation)",
        },
        "label_counts": {p: label_counts(data.subset(ix), names) for p, ix in parts.items()},
        "input_lengths": {f: length_stats(tokenizer, t) for f, t in inputs.items()},
        "optimizer": "AdamW(lr; torch defaults, weight_decay 0.01), no clipping, 10% warm-up, linear decay",
        "precision": "bf16 autocast" if amp is not None else "fp32",
        "cpu": {**cpu_info(), "native_bf16": native_bf16(torch.device("cpu"))},
        "load": {
            "shared_machine": "other helpers' tests and jobs ran on the same cores",
            "nice": os.nice(0),
            "torch_threads": torch.get_num_threads(),
            "loadavg_at_start": os.getloadavg(),
        },
        "epochs": [],
        "in_progress": None,
        "complete": False,
    }
    if out.exists() and json.loads(out.read_text()).get("options") == run_options(args):
        result["epochs"] = json.loads(out.read_text())["epochs"]  # a resumed run keeps finished epochs
        result["complete"] = any(e["epoch"] == args.epochs for e in result["epochs"])
    npz = out.with_suffix(".npz")
    arrays = dict(np.load(npz)) if npz.exists() and result["epochs"] else {}
    # the outputs say which CPU made them (bf16 on a native-bf16 CPU, fp32 elsewhere), as the JSON does
    cpu = json.dumps(result["cpu"], sort_keys=True)
    arrays.update(ids=np.array(valid.ids), articles=np.array(valid.articles), cpu=np.array(cpu))

    steps = math.ceil(len(train) / args.batch_size)

    def report(epoch: int, step: int, c: dict, raw: dict | None = None) -> None:
        timing = {
            "train_steps": step,
            "train_seconds": c["seconds"],
            "train_cpu_seconds": c["cpu_seconds"],
            "train_tokens": c["tokens"],
            "train_tokens_per_second": c["tokens"] / c["seconds"],
            "loadavg": os.getloadavg(),
        }
        result["in_progress"] = None if raw is not None else {"epoch": epoch + 1, "of_steps": steps, **timing}
        out.parent.mkdir(parents=True, exist_ok=True)
        if raw is None:
            out.write_text(json.dumps(result, indent=2, default=float))
            return
        metrics = evaluate_outputs(raw, valid, model.config)
        record = {
            "epoch": epoch + 1,
            "validation": headline(metrics),
            "validation_per_label_f1": {h: metrics[h]["per_label_f1"] for h in names},
            **timing,
        }
        result["epochs"] = [e for e in result["epochs"] if e["epoch"] != epoch + 1] + [record]
        result["complete"] = epoch + 1 == args.epochs
        arrays.update({f"epoch{epoch + 1}_{k}": v for k, v in raw.items()})
        np.savez_compressed(npz, **arrays)
        out.write_text(json.dumps(result, indent=2, default=float))
        h = record["validation"]
        print(
            f"epoch {epoch + 1}: {c['seconds'] / 60:.1f} min, {record['train_tokens_per_second']:.0f} tok/s, "
            + ", ".join(f"{k} {v:.3f}" for k, v in h.items()),
            flush=True,
        )

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    plain_finetune(model, tokenizer, train_ds, valid, args, amp, workdir, report)
    print(f"wrote {out} and {npz}")


if __name__ == "__main__":
    main()
