"""Static int8 encoder through ONNX Runtime: calibrated on real paragraphs, heads stay fp32 in torch.

Dynamic quantisation (torch's `quantize_dynamic`) requantises activations per batch and quantised the
heads too; it changed ~20% of labels. Here only the encoder's matrix multiplications are int8, with
activation ranges fixed from real paragraphs (ONNX Runtime's static QDQ quantisation, per-channel
weights), and the pooled vector, lexical branch and heads run in fp32 torch exactly as before. The
int8 encoder is a file beside the model's weights (`encoder.int8.onnx`); `load_model` plugs it in on
CPU and ignores it on CUDA, where the torch weights run unchanged.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ENCODER_FILE = "encoder.int8.onnx"
OPSET = 17


class _Encoder(torch.nn.Module):
    """The HF encoder with a plain (input_ids, attention_mask) -> last_hidden_state signature."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def export_encoder(model, path: str | Path) -> None:
    """The student's encoder as fp32 ONNX with dynamic batch and sequence axes."""
    ids = torch.ones((2, 16), dtype=torch.int64)
    mask = torch.ones((2, 16), dtype=torch.int64)
    torch.onnx.export(
        _Encoder(model.encoder).eval(),
        (ids, mask),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["last_hidden_state"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "last_hidden_state": {0: "batch", 1: "tokens"},
        },
        opset_version=OPSET,
        dynamo=False,
    )


def calibration_batches(
    tokenizer, texts: Sequence[str], max_seq_length: int, batch_size: int = 16
) -> list[dict]:
    """Length-sorted padded batches of real texts, as ONNX Runtime's calibrator feeds them."""
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
    """Write `output`/encoder.int8.onnx: the encoder with int8 MatMuls calibrated on `texts`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self, batches: list[dict]):
            self.batches: Iterator[dict] = iter(batches)

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    target = Path(output) / ENCODER_FILE
    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared = Path(tmp) / "encoder.onnx", Path(tmp) / "encoder.prep.onnx"
        export_encoder(model, fp32)
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(Path(tmp) / ENCODER_FILE),
            Reader(calibration_batches(tokenizer, texts, int(model.config.max_seq_length))),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        shutil.move(str(Path(tmp) / ENCODER_FILE), target)
    return target


class OnnxEncoder(torch.nn.Module):
    """Stands in for the HF encoder inside `StudentModel`: runs the int8 ONNX file on CPU."""

    def __init__(self, path: str | Path, threads: int | None = None):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.path = str(path)
        self.session = ort.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **_: object) -> SimpleNamespace:
        (hidden,) = self.session.run(
            None,
            {
                "input_ids": input_ids.cpu().numpy().astype(np.int64, copy=False),
                "attention_mask": attention_mask.cpu().numpy().astype(np.int64, copy=False),
            },
        )
        return SimpleNamespace(last_hidden_state=torch.from_numpy(hidden))


def has_int8_encoder(model_dir: str | Path) -> bool:
    return (Path(model_dir) / ENCODER_FILE).exists()


def use_int8_encoder(model, model_dir: str | Path):
    """`model` with its encoder replaced by the int8 ONNX one in `model_dir` (CPU only)."""
    model.encoder = OnnxEncoder(Path(model_dir) / ENCODER_FILE)
    return model


def is_int8(model) -> bool:
    return isinstance(getattr(model, "encoder", None), OnnxEncoder)
