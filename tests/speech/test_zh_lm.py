"""The Mandarin trigram second pass, with the packaged libime model and the real Whisper-base model."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tingyin.audio import decode
from tingyin.config import reset_settings
from tingyin.speech import TranscribeOptions, textnorm, transcribe
from tingyin.speech.zh_lm import (
    PACKAGED_MODEL,
    ZhLanguageModel,
    find_language_model,
    get_language_model,
    reset_language_model,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
NGRAM_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ngram"


@pytest.fixture(scope="module")
def lm() -> ZhLanguageModel:
    model = get_language_model()
    assert model is not None
    return model


def test_trigram_prefers_the_sensible_sound_alike(lm: ZhLanguageModel) -> None:
    assert lm.score("公积金首套房首付") > lm.score("攻击金手套房手腹") + 10
    assert lm.score("可穿戴设备") > lm.score("可穿戴色背")
    # Punctuation, digits and Latin words do not break scoring.
    assert lm.score("二零一五年，NBD的3D打印。") < 0


def test_rewrites_propose_the_right_words(lm: ZhLanguageModel) -> None:
    rewrites = lm.rewrites("攻击金手套房，二套房手腹分别降至二成三成。")
    assert rewrites[0] == "公积金首套房，二套房首付分别降至二成三成。"  # punctuation kept in place
    assert "可穿戴设备" in lm.rewrites("可穿戴色背")


def test_numerals_and_kept_phrases_are_never_rewritten(lm: ZhLanguageModel) -> None:
    for rewrite in lm.rewrites("二零一四年年报", limit=10):
        assert rewrite.startswith("二零一四")
    assert all("攻击金" in r for r in lm.rewrites("攻击金手套房", limit=10, keep=("攻击金",)))
    assert lm.rewrites("hello 123") == []


def test_second_pass_fixes_a_clip_the_plain_model_misspells() -> None:
    audio = decode(FIXTURES / "BAC009S0252W0179.flac").samples
    plain = transcribe(audio, TranscribeOptions(language="zh", itn=False, extra={"second_pass": "false"}))
    rescored = transcribe(audio, TranscribeOptions(language="zh", itn=False))
    # Whisper base hears 公积金首套房 ... 首付 as 攻击金手套房 ... 手腹; the unigram corrector fixes part.
    assert "首付" not in plain.text
    assert "公积金" in rescored.text and "首套房" in rescored.text and "首付" in rescored.text
    # Timestamps still come from the alignment of the text that was chosen.
    words = [w for u in rescored.utterances for w in u.words]
    assert "".join(w.text for w in words).startswith("公积金首套房")
    assert all(a.start_ms <= b.start_ms for a, b in itertools.pairwise(words))


@pytest.fixture
def set_zh_lm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets ``TINGYIN_ZH_LM`` for one test; the installed model is back afterwards."""

    def apply(value: str) -> None:
        monkeypatch.setenv("TINGYIN_ZH_LM", value)
        reset_settings()
        reset_language_model()

    yield apply
    monkeypatch.delenv("TINGYIN_ZH_LM", raising=False)
    reset_settings()
    reset_language_model()


def test_switched_off_the_engine_falls_back_to_the_unigram_corrector(
    set_zh_lm: Callable[[str], None],
) -> None:
    set_zh_lm("off")
    assert get_language_model() is None
    audio = decode(FIXTURES / "BAC009S0252W0179.flac").samples
    text = transcribe(audio, TranscribeOptions(language="zh", itn=False)).text
    assert "二成三成" in text


def test_an_unreadable_model_file_falls_back(tmp_path: Path, set_zh_lm: Callable[[str], None]) -> None:
    broken = tmp_path / "broken.lm"
    broken.write_bytes(b"not a language model")
    set_zh_lm(str(broken))
    assert get_language_model() is None


@pytest.mark.parametrize("name", ["small.arpa", "small.quant-array.klm"])
def test_another_model_file_can_be_named(name: str, set_zh_lm: Callable[[str], None]) -> None:
    set_zh_lm(str(NGRAM_FIXTURES / name))
    model = get_language_model()
    assert model is not None and model.path == NGRAM_FIXTURES / name
    # Two of the fixture model's Chinese words: the best segmentation is those words, scored by that model.
    chinese = [w for w in model.model.vocab if textnorm.has_cjk(w) and textnorm.to_simplified(w) == w]
    first, second = chinese[:2]
    state = model.model.begin_sentence()
    expected = 0.0
    for word in (first, second, "</s>"):
        logprob, state = model.model.score(state, word)
        expected += logprob * math.log(10)
    assert model.score(first + second) == pytest.approx(expected)


def test_the_packaged_model_is_the_default_and_back_after_a_switch() -> None:
    assert find_language_model() == PACKAGED_MODEL
    model = get_language_model()
    assert model is not None and model.path == PACKAGED_MODEL
    assert ZhLanguageModel.packaged().path == PACKAGED_MODEL
