"""The CPU a benchmark ran on: model and the instruction-set flags that change speed or answers."""

from __future__ import annotations

import os
import platform
from pathlib import Path

# Flags that decide which kernels run: AVX-512 and its bf16/VNNI extensions, AMX, AVX2 (x86); bf16 (arm).
FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile", "bf16")


def cpu_info() -> dict:
    """Model name, core count, the FLAGS present, and a one-word summary (e.g. 'AVX2 only')."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Hardware") and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif key in ("flags", "Features"):
                flags |= set(value.split())
    except OSError:
        pass
    present = [f for f in FLAGS if f in flags]
    if {"amx_bf16", "avx512_bf16", "bf16"} & set(present):
        summary = "native bf16 (" + ", ".join(f for f in present if "bf16" in f) + ")"
    elif "avx512f" in present:
        summary = "AVX-512 without bf16"
    elif "avx2" in present:
        summary = "AVX2 only"
    else:
        summary = "no AVX2/AVX-512"
    return {"model": model, "cpu_count": os.cpu_count(), "flags": present, "summary": summary}
