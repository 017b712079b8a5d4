"""The Mandarin trigram second pass, with the packaged libime model and the real Whisper-base model."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import pytest

from tingyin.audio import decode
from tingyin.speech import DecodeOptions, Recognizer, textnorm, zh_lm
from tingyin.speech.rescoring import ESTIMATED_EXACT_COST, SCORED_CANDIDATES, SecondPass, estimated_logprob
from tingyin.speech.zh_lm import PACKAGED_MODEL, ZhLanguageModel, find_language_model, load_language_model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "speech"
NGRAM_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ngram"


@pytest.fixture(scope="module")
def lm(recognizer: Recognizer) -> ZhLanguageModel:
    assert recognizer.language_model is not None
    return recognizer.language_model


def test_trigram_prefers_the_sensible_sound_alike(lm: ZhLanguageModel) -> None:
    assert lm.score("公积金首套房首付") > lm.score("攻击金手套房手腹") + 10
    assert lm.score("可穿戴设备") > lm.score("可穿戴色背")
    # Punctuation, digits and Latin words do not break scoring.
    assert lm.score("二零一五年，NBD的3D打印。") < 0


def test_a_latin_word_inside_chinese_is_a_word_of_the_sentence(lm: ZhLanguageModel) -> None:
    # Each Chinese run beside a Latin word used to be scored as a sentence of its own: 3D打印 paid for two
    # sentence boundaries and a rare word, so the trigram took the sound-alike 三地打印 every time. Now it
    # hardly takes sides, and the audio decides.
    latin, alike = "当3D打印技术已经不那么神秘的时候", "当三地打印技术已经不那么神秘的时候"
    assert abs(lm.score(latin) - lm.score(alike)) < ESTIMATED_EXACT_COST
    assert lm.score("打开Maps") > lm.score("打开马普斯")


def test_rewrites_propose_the_right_words(lm: ZhLanguageModel) -> None:
    rewrites = lm.rewrites("攻击金手套房，二套房手腹分别降至二成三成。")
    assert rewrites[0] == "公积金首套房，二套房首付分别降至二成三成。"  # punctuation kept in place
    assert "可穿戴设备" in lm.rewrites("可穿戴色背")


def test_numerals_and_kept_phrases_are_never_rewritten(lm: ZhLanguageModel) -> None:
    for rewrite in lm.rewrites("二零一四年年报", limit=10):
        assert rewrite.startswith("二零一四")
    assert all("攻击金" in r for r in lm.rewrites("攻击金手套房", limit=10, keep=("攻击金",)))
    assert lm.rewrites("hello 123") == []


def _full_search(lm: ZhLanguageModel, run: str, rewrite: bool) -> list[tuple[float, float, str]]:
    """The lattice search without its shortcuts: every path is scored and kept until its position is
    reached, then the best ``BEAM`` go on."""
    longest = zh_lm.MAX_REWRITE_WORD if rewrite else zh_lm.MAX_SEGMENT_WORD
    beams: list[list[tuple[float, float, Any, str]]] = [[] for _ in range(len(run) + 1)]
    beams[0] = [(0.0, 0.0, lm.model.begin_sentence(), "")]
    for i in range(len(run)):
        for total, logprob, state, text in sorted(beams[i], key=lambda p: -p[0])[: zh_lm.BEAM]:
            for size in range(1, min(longest, len(run) - i) + 1):
                stretch = run[i : i + size]
                options = [(stretch, 0.0)] if size == 1 or stretch in lm.model else []
                if rewrite:
                    options += [(word, cost) for word, cost, _ in lm._sound_alikes(stretch)]
                for word, cost in options:
                    score, after = lm.model.score(state, word)
                    score *= math.log(10)
                    beams[i + size].append((total + score - cost, logprob + score, after, text + word))
    finished: dict[str, tuple[float, float]] = {}
    for total, logprob, state, text in beams[len(run)]:
        last = lm.model.score(state, "</s>")[0] * math.log(10)
        if text not in finished or total + last > finished[text][0]:
            finished[text] = (total + last, logprob + last)
    return [(t, s, text) for text, (t, s) in sorted(finished.items(), key=lambda item: -item[1][0])]


def test_the_search_keeps_what_a_full_search_keeps(lm: ZhLanguageModel) -> None:
    # The search cuts each position's paths early and skips words whose best possible score cannot
    # matter; it must keep exactly the paths (and ties) the plain search keeps.
    for run in ("攻击金手套房二套房手腹分别降至二成三成", "可穿戴色背", "市民们走在突然下起的太阳雨中", "的"):
        for rewrite in (True, False):
            found = lm._search(run, rewrite=rewrite, keep=frozenset())
            assert [(p.total, p.lm, p.text) for p in found] == _full_search(lm, run, rewrite)


def test_second_pass_fixes_a_clip_the_plain_model_misspells(recognizer: Recognizer) -> None:
    audio = decode(FIXTURES / "BAC009S0252W0179.flac").samples
    plain = recognizer.transcribe(audio, DecodeOptions(language="zh", itn=False, second_pass=False))
    rescored = recognizer.transcribe(audio, DecodeOptions(language="zh", itn=False))
    # Whisper base hears 公积金首套房 ... 首付 as 攻击金手套房 ... 手腹.
    assert "首付" not in plain.text
    assert "公积金" in rescored.text and "首套房" in rescored.text and "首付" in rescored.text
    # Timestamps still come from the alignment of the text that was chosen.
    words = [w for u in rescored.utterances for w in u.words]
    assert "".join(w.text for w in words).startswith("公积金首套房")
    assert all(a.start_ms <= b.start_ms for a, b in itertools.pairwise(words))
    assert rescored.options is not None and rescored.options.second_pass


def test_only_the_likeliest_candidates_get_a_teacher_forced_score(
    recognizer: Recognizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    audio = decode(FIXTURES / "BAC009S0252W0179.flac").samples
    second_pass = recognizer.decoder.second_pass
    assert second_pass is not None and second_pass.scored_candidates == SCORED_CANDIDATES
    scored: list[int] = []
    align = recognizer.runner.align

    def counting_align(
        encoded: Any, start: list[int], token_lists: list[list[int]], frames: list[int]
    ) -> Any:
        scored.append(len(token_lists))
        return align(encoded, start, token_lists, frames)

    monkeypatch.setattr(recognizer.runner, "align", counting_align)
    limited = recognizer.transcribe(audio, DecodeOptions(language="zh", itn=False))
    limited_calls = list(scored)
    scored.clear()
    monkeypatch.setattr(second_pass, "scored_candidates", None)
    every = recognizer.transcribe(audio, DecodeOptions(language="zh", itn=False))
    # One chunk: one scoring call, whose winner's alignment gives the timestamps.
    assert limited_calls == [SCORED_CANDIDATES] and scored[0] > SCORED_CANDIDATES
    assert limited.text == every.text and "公积金首套房" in limited.text
    with pytest.raises(ValueError):
        SecondPass(recognizer.runner, second_pass.proposer, [], scored_candidates=1)


def test_a_rewrites_estimated_score_is_its_sources_less_the_change() -> None:
    heard = "攻击金手套房"
    assert estimated_logprob(-6.0, heard, "公积金首套房") == pytest.approx(-6.0 - 3 * ESTIMATED_EXACT_COST)
    assert estimated_logprob(-6.0, heard, heard) == -6.0
    assert estimated_logprob(-6.0, heard, "公积金") < estimated_logprob(-6.0, heard, "公积金首套房")


def test_without_the_trigram_the_unigram_fallback_still_corrects(unigram_recognizer: Recognizer) -> None:
    assert unigram_recognizer.language_model is None
    audio = decode(FIXTURES / "BAC009S0252W0179.flac").samples
    text = unigram_recognizer.transcribe(audio, DecodeOptions(language="zh", itn=False)).text
    assert "二成三成" in text


def test_switched_off_or_unreadable_models_fall_back(tmp_path: Path) -> None:
    assert load_language_model("off") is None
    broken = tmp_path / "broken.lm"
    broken.write_bytes(b"not a language model")
    assert load_language_model(str(broken)) is None


@pytest.mark.parametrize("name", ["small.arpa", "small.quant-array.klm"])
def test_another_model_file_can_be_named(name: str) -> None:
    model = load_language_model(str(NGRAM_FIXTURES / name))
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


def test_the_packaged_model_is_the_default() -> None:
    assert find_language_model("") == PACKAGED_MODEL
    model = load_language_model("")
    assert model is not None and model.path == PACKAGED_MODEL
    assert ZhLanguageModel.packaged().path == PACKAGED_MODEL
