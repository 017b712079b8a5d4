"""onnxruntime sessions as every model here runs them: CPU, threads pinned, quiet."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cpu_session(model: Path | str | bytes, threads: int | None = None, *, memory_arena: bool = True) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU with ``threads`` intra-op threads (default: the
    configured CPU threads). One inter-op thread: on 2 cores, more threads than cores made an LSTM
    model 30x slower here. ``memory_arena=False`` for models with large activations: onnxruntime's arena
    keeps its peak for the life of the session (musicnn: 1.6 GB after one batch of 32 patches), without it
    each run's memory is freed when the run ends."""
    import onnxruntime as ort

    from tingyin.config import get_settings

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or get_settings().cpu_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = memory_arena
    # No spinning: after a run onnxruntime's idle threads otherwise busy-wait for more work, taking the two
    # cores from the Whisper encoder that runs next (5 s clip latency p50 0.40 s without, 0.40-0.50 s with).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
