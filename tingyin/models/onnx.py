"""onnxruntime sessions as every model here runs them: CPU, threads pinned, quiet."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cpu_session(model: Path | str | bytes, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU with ``threads`` intra-op threads (default: the
    configured CPU threads). One inter-op thread: on 2 cores, more threads than cores made an LSTM
    model 30x slower here."""
    import onnxruntime as ort

    from tingyin.config import get_settings

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or get_settings().cpu_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
