"""Static int8 encoder through OpenVINO and NNCF: calibrated on real paragraphs, heads stay fp32 in torch.

Dynamic quantisation (torch's `quantize_dynamic`) requantises activations per batch and quantised the
heads too; it changed ~20% of labels. Here only the encoder is int8, with activation ranges fixed from
real paragraphs (NNCF's post-training quantisation, transformer preset), and the pooled vector, lexical
branch and heads run in fp32 torch exactly as before. The int8 encoder is an OpenVINO IR beside the
model's weights (`encoder.int8.xml` + `.bin`); `load_model` plugs it in on CPU and ignores it on CUDA,
where the torch weights run unchanged.

Why OpenVINO rather than ONNX Runtime (the first version): ONNX Runtime's QDQ int8 ran at 0.34x torch's
bf16 path on an AMX Xeon, while OpenVINO's int8 scored 1.75-1.87x the paragraphs per CPU-second of torch's
bf16 path for the 6-, 5- and 4-layer students on an AVX512-BF16/VNNI EPYC, at the same agreement with the
teacher for the 6-layer one (docs/propagate.md, issue 21).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ENCODER_FILE = "encoder.int8.xml"  # the IR's graph; its weights are the `.bin` of the same stem


def int8_files(model_dir: str | Path) -> list[Path]:
    """The int8 encoder's files in `model_dir` (none when it has no int8 encoder)."""
    xml = Path(model_dir) / ENCODER_FILE
    return [xml, xml.with_suffix(".bin")] if xml.exists() else []


class _Encoder(torch.nn.Module):
    """The HF encoder with a plain (input_ids, attention_mask) -> last_hidden_state signature."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def convert_encoder(model):
    """The student's encoder as an fp32 OpenVINO model with dynamic batch and sequence axes."""
    import openvino as ov

    ids = torch.ones((2, 16), dtype=torch.int64)
    return ov.convert_model(
        _Encoder(model.encoder).eval(),
        example_input={"input_ids": ids, "attention_mask": ids},
        input=[("input_ids", [-1, -1], ov.Type.i64), ("attention_mask", [-1, -1], ov.Type.i64)],
    )


def calibration_batches(
    tokenizer, texts: Sequence[str], max_seq_length: int, batch_size: int = 16
) -> list[dict]:
    """Length-sorted padded batches of real texts, as the scorer feeds the encoder."""
    texts = sorted(texts, key=len)
    return [
        dict(
            tokenizer(
                list(texts[start : start + batch_size]),
                truncation=True,
                max_length=max_seq_length,
                padding=True,
                return_token_type_ids=False,
                return_tensors="np",
            )
        )
        for start in range(0, len(texts), batch_size)
    ]


def quantize_encoder(model, tokenizer, texts: Sequence[str], output: str | Path) -> Path:
    """Write `output`/encoder.int8.xml (+ .bin): the encoder in int8, calibrated on `texts`."""
    import nncf
    import openvino as ov

    batches = calibration_batches(tokenizer, texts, int(model.config.max_seq_length))
    quantized = nncf.quantize(
        convert_encoder(model),
        nncf.Dataset(batches),
        model_type=nncf.ModelType.TRANSFORMER,  # keeps softmax, layer norm and GELU in float
        subset_size=len(batches),  # every batch: NNCF counts items, not texts
    )
    target = Path(output) / ENCODER_FILE
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return target


class OpenVinoEncoder(torch.nn.Module):
    """Stands in for the HF encoder inside `StudentModel`: runs the int8 IR on CPU.

    Non-quantised operations run in fp32 (`INFERENCE_PRECISION_HINT`), not in bf16 where the CPU has
    it, so a variant gives the same answers on every CPU kind up to the int8 kernels themselves."""

    def __init__(self, path: str | Path):
        super().__init__()
        import openvino as ov

        self.path = str(path)
        config = {
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),  # as many as torch runs the rest with
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time, all threads on it
        }
        self.compiled = ov.Core().compile_model(self.path, "CPU", config)
        self._local = threading.local()  # an infer request is not thread-safe: one per calling thread

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: object) -> SimpleNamespace:
        if not hasattr(self._local, "request"):
            self._local.request = self.compiled.create_infer_request()
        inputs = {
            "input_ids": input_ids.cpu().numpy().astype(np.int64, copy=False),
            "attention_mask": attention_mask.cpu().numpy().astype(np.int64, copy=False),
        }
        hidden = self._local.request.infer(inputs)[0]
        # a copy: the request writes its next answer into the same buffer
        return SimpleNamespace(last_hidden_state=torch.from_numpy(np.array(hidden)))


def has_int8_encoder(model_dir: str | Path) -> bool:
    return bool(int8_files(model_dir))


def use_int8_encoder(model, model_dir: str | Path):
    """`model` with its encoder replaced by the int8 one in `model_dir` (CPU only)."""
    model.encoder = OpenVinoEncoder(Path(model_dir) / ENCODER_FILE)
    return model


def is_int8(model) -> bool:
    return isinstance(getattr(model, "encoder", None), OpenVinoEncoder)
