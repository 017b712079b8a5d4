"""Convert the musicnn TF1 checkpoints to ONNX and record TensorFlow reference outputs.

musicnn 0.1.0 (ISC license, Music Technology Group, UPF) ships its taggers as TensorFlow 1 checkpoints. The
server must not depend on TensorFlow, so this script rebuilds each network with musicnn's own ``models.py`` in
inference mode, freezes it, converts it with tf2onnx and writes:

- ``tingyin/music/weights/<model>.onnx``: input ``x`` (batch, 187, 96) log-mel patches, outputs ``tags``
  (batch, 50, sigmoid probabilities) and ``penultimate`` (batch, 200, the embedding).
- ``tests/fixtures/music/musicnn_reference.npz``: inputs and the TensorFlow outputs for each model, for the
  parity test, plus the end-to-end taggram of musicnn's own ``extractor`` on the fixture clip.

TensorFlow breaks the server's numpy/protobuf, so run this in a throw-away venv, never the global Python::

    python3.11 -m venv /tmp/tfvenv
    /tmp/tfvenv/bin/pip install tensorflow-cpu==2.15.1 "numpy<2" librosa==0.10.1 tf2onnx==1.16.1 \\
        onnx==1.15.0 onnxruntime
    /tmp/tfvenv/bin/python scripts/convert_musicnn.py            # downloads musicnn==0.1.0 with pip

Re-running gives the same weights and the same reference outputs; tf2onnx may lay out a few reshape nodes
differently from run to run, so the files are compared by ``tests/music/test_parity.py`` (ONNX outputs
against the recorded TensorFlow outputs), not by checksum.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = REPO / "tingyin" / "music" / "weights"
FIXTURE_DIR = REPO / "tests" / "fixtures" / "music"
DEFAULT_MODELS = ("MTT_musicnn", "MSD_musicnn")
N_FRAMES = 187  # musicnn: librosa.time_to_frames(3, sr=16000, n_fft=512, hop_length=256) + 1
N_MELS = 96
OPSET = 13


def fetch_musicnn(work: Path) -> Path:
    """Download the musicnn 0.1.0 wheel (no dependencies), unpack it, return the folder holding it."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "musicnn==0.1.0", "--no-deps", "-d", str(work)], check=True
    )
    wheel = next(work.glob("musicnn-0.1.0-*.whl"))
    target = work / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target


def reference_inputs(clip: Path) -> np.ndarray:
    """Two patches: seeded noise in the log-mel range, and the fixture clip's first patch (librosa)."""
    import librosa

    rng = np.random.default_rng(20190712)
    noise = rng.uniform(0.0, 3.0, size=(N_FRAMES, N_MELS)).astype(np.float32)
    audio, _ = librosa.load(str(clip), sr=16000)
    mel = librosa.feature.melspectrogram(y=audio, sr=16000, hop_length=256, n_fft=512, n_mels=N_MELS).T
    music = np.log10(10000 * mel.astype(np.float32) + 1)[:N_FRAMES].astype(np.float32)
    return np.stack([noise, music])


def convert(musicnn_root: Path, model: str, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Freeze ``model``, write its ONNX file, and return the TensorFlow outputs on ``inputs``."""
    import tensorflow as tf
    import tf2onnx

    sys.path.insert(0, str(musicnn_root))
    from musicnn import configuration, models

    tf.compat.v1.disable_eager_execution()
    labels = configuration.MTT_LABELS if model.startswith("MTT") else configuration.MSD_LABELS
    graph = tf.Graph()
    with graph.as_default():
        with tf.name_scope("model"):
            x = tf.compat.v1.placeholder(tf.float32, [None, N_FRAMES, N_MELS], name="x")
            # is_training=False: batch norm uses its moving statistics and dropout is the identity.
            logits, *features = models.define_model(x, False, model, len(labels))
            penultimate = features[-1]
        tags = tf.nn.sigmoid(logits, name="tags")
        embedding = tf.identity(penultimate, name="penultimate")
        session = tf.compat.v1.Session(graph=graph)
        saver = tf.compat.v1.train.Saver()
        saver.restore(session, str(musicnn_root / "musicnn" / model) + "/")
        tf_tags, tf_embedding = session.run([tags, embedding], feed_dict={x: inputs})
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(
            session, graph.as_graph_def(), ["tags", "penultimate"]
        )
        session.close()

    WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
    onnx_path = WEIGHTS_DIR / f"{model}.onnx"
    with tf.Graph().as_default():
        tf2onnx.convert.from_graph_def(
            frozen,
            input_names=["model/x:0"],
            output_names=["tags:0", "penultimate:0"],
            opset=OPSET,
            output_path=str(onnx_path),
        )
    _rename_io(onnx_path)
    print(f"{model}: wrote {onnx_path} ({onnx_path.stat().st_size / 1e6:.2f} MB)")
    return {f"{model}/tags": tf_tags, f"{model}/penultimate": tf_embedding}


def _rename_io(onnx_path: Path) -> None:
    """Name the graph's input and outputs ``x``, ``tags``, ``penultimate`` instead of TF tensor names."""
    import onnx

    graph_proto = onnx.load(str(onnx_path))
    renames = {"model/x:0": "x", "tags:0": "tags", "penultimate:0": "penultimate"}
    for node in graph_proto.graph.node:
        node.input[:] = [renames.get(name, name) for name in node.input]
        node.output[:] = [renames.get(name, name) for name in node.output]
    for value in list(graph_proto.graph.input) + list(graph_proto.graph.output):
        value.name = renames.get(value.name, value.name)
    graph_proto.producer_name = "tingyin scripts/convert_musicnn.py (tf2onnx)"
    onnx.checker.check_model(graph_proto)
    onnx.save(graph_proto, str(onnx_path))


def end_to_end_reference(musicnn_root: Path, clip: Path, model: str) -> np.ndarray:
    """musicnn's own extractor (librosa + TF) on ``clip``: the taggram, one row per 3 s patch."""
    sys.path.insert(0, str(musicnn_root))
    from musicnn.extractor import extractor

    taggram, _labels = extractor(str(clip), model=model, input_length=3, extract_features=False)
    return np.asarray(taggram, dtype=np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--musicnn-root", type=Path, help="folder holding the unpacked musicnn package")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--clip", type=Path, default=FIXTURE_DIR / "loop_garzul_16k.flac")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.musicnn_root or fetch_musicnn(Path(tmp))
        inputs = reference_inputs(args.clip)
        reference: dict[str, np.ndarray] = {"inputs": inputs}
        for model in args.models:
            reference.update(convert(root, model, inputs))
            reference[f"{model}/taggram"] = end_to_end_reference(root, args.clip, model)
        license_src = root / "musicnn-0.1.0.dist-info" / "LICENSE.md"
        notice = (
            "The ONNX files in this folder are converted from the checkpoints of musicnn 0.1.0\n"
            "(https://github.com/jordipons/musicnn, PyPI musicnn==0.1.0) by scripts/convert_musicnn.py.\n"
            "Their license, ISC:\n\n" + license_src.read_text()
        )
        (WEIGHTS_DIR / "LICENSE-musicnn.txt").write_text(notice)

    FIXTURE_DIR.mkdir(parents=True, exist_ok=True)
    out = FIXTURE_DIR / "musicnn_reference.npz"
    np.savez_compressed(out, **reference)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
