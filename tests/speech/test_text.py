"""Text post-processing, hot-word correction and scoring (no model needed)."""

from __future__ import annotations

import itertools

from tingyin.eval.text import edit_counts, error_rate, normalize_en, scoring_units
from tingyin.speech import hotwords
from tingyin.speech.guards import cut_repetitions
from tingyin.speech.lexicon import Lexicon, correct_homophones
from tingyin.speech.textnorm import (
    numbers_to_digits,
    numbers_to_words,
    strip_punctuation,
    to_chinese_punctuation,
    to_simplified,
)
from tingyin.speech.types import HotWord
from tingyin.speech.zh_numerals import cardinal, written_span


def test_traditional_becomes_simplified() -> None:
    assert (
        to_simplified("而且這類可穿戴設備也不會執行太過複雜的運算")
        == "而且这类可穿戴设备也不会执行太过复杂的运算"
    )
    assert to_simplified("plain English") == "plain English"


def test_numbers_to_chinese_words() -> None:
    assert numbers_to_words("马龙以117比116收获", "zh") == "马龙以一百一十七比一百一十六收获"
    assert numbers_to_words("观察30年来的曲线", "zh") == "观察三十年来的曲线"
    # Years and long digit strings (phone numbers, codes) are read digit by digit.
    assert numbers_to_words("会发现1990年后出生", "zh") == "会发现一九九零年后出生"
    assert numbers_to_words("电话13702662097", "zh") == "电话一三七零二六六二零九七"
    assert numbers_to_words("涨了7.5%", "zh") == "涨了百分之七点五"


def test_numbers_to_english_words_and_back() -> None:
    assert numbers_to_words("15,000 of these", "en") == "fifteen thousand of these"
    assert numbers_to_digits("by eighteen eleven had risen to six hundred and twenty nine", "en") == (
        "by 1811 had risen to 629"
    )
    assert numbers_to_digits("百分之二十五", "zh") == "25%"
    # Currencies stay words after the digits (wetext alone: ¥50000, 人民币¥500, $50000).
    assert numbers_to_digits("被罚款五万元", "zh") == "被罚款50000元"
    assert numbers_to_digits("人民币五百元和五万美元", "zh") == "人民币500元和50000美元"
    assert numbers_to_digits("元旦前的三百七十万元", "zh") == "元旦前的370万元"
    # A number read digit by digit is written whole (wetext alone: 7565 6008, 93575 653).
    assert numbers_to_digits("七五六五六零零八", "zh") == "75656008"
    assert numbers_to_digits("拨打九三五七五六五三", "zh") == "拨打93575653"
    assert numbers_to_digits("一三四七三八二幺三六八", "zh") == "13473821368"
    assert numbers_to_digits("号码是1347 3821", "zh") == "号码是1347 3821"  # groups the text had stay


def test_english_itn_keeps_units_as_spoken() -> None:
    """wetext alone writes "19 ft", '31 "', "20 min", "60 mph", "25 %" (twelve and below stay words)."""
    assert numbers_to_digits("vaulted ceilings nineteen feet high", "en") == "vaulted ceilings 19 feet high"
    assert numbers_to_digits("thirty one inches wide and twelve miles long", "en") == (
        "31 inches wide and twelve miles long"
    )
    assert (
        numbers_to_digits("twenty minutes or sixty miles per hour", "en") == "20 minutes or 60 miles per hour"
    )
    assert numbers_to_digits("wait one second, twenty seconds", "en") == "wait one second, 20 seconds"
    assert numbers_to_digits("twenty five percent of fifteen thousand", "en") == "25% of 15000"
    assert numbers_to_digits("the second time in eighteen forty four", "en") == "the second time in 1844"


def test_english_itn_writes_prose_as_english_is_written() -> None:
    """wetext alone: "wait a 2nd , please", "the 1st time", "forty-nine" left in words beside "16",
    "at 05:00"."""
    assert numbers_to_digits("Wait a second, please. The first time.", "en") == (
        "Wait a second, please. The first time."
    )
    # A day of a month, and ordinals from the tenth on, in figures.
    assert numbers_to_digits("on May first and the third of October", "en") == (
        "on May 1st and the 3rd of October"
    )
    assert numbers_to_digits("the twenty first of May in the nineteenth century", "en") == (
        "the 21st of May in the 19th century"
    )
    assert numbers_to_digits("a yard forty-nine feet by thirty-one,", "en") == "a yard 49 feet by 31,"
    assert numbers_to_digits("It costs five dollars, ok?", "en") == "It costs $5, ok?"
    assert numbers_to_digits("at five o'clock", "en") == "at 5:00"
    # Quotes: wetext failed on the whole text (every number stayed a word) and escaped them in Chinese.
    assert (
        numbers_to_digits('a "chummage" ticket, twenty-five of them', "en")
        == 'a "chummage" ticket, 25 of them'
    )
    assert numbers_to_digits('他说"二零二四年三月"', "zh") == '他说"2024年3月"'
    # Clock times: wetext read hour and minutes as one number (1030), kept the article before a quarter
    # ("a 10:15") and doubled the full stop after pm.
    assert numbers_to_digits("We meet at ten thirty.", "en") == "We meet at 10:30."
    assert numbers_to_digits("by eleven fifteen, at nine oh five, at seven forty-five", "en") == (
        "by 11:15, at 9:05, at 7:45"
    )
    assert numbers_to_digits("It is a quarter past ten.", "en") == "It is 10:15."
    assert numbers_to_digits("We left at seven pm.", "en") == "We left at 7:00 p.m."
    assert numbers_to_digits("at ten thirty pm.", "en") == "at 10:30 p.m."
    # Not a clock without a word that introduces a time.
    assert numbers_to_digits("in the year ten thirty", "en") == "in the year 1030"
    # Two numbers side by side stay words ("one thirty six" would be the time 1:36).
    assert numbers_to_digits("one thirty-six feet, six twenty-three feet", "en") == (
        "one thirty-six feet, six twenty-three feet"
    )


def test_mandarin_itn_writes_digits_and_keeps_the_words() -> None:
    """As Chinese transcripts (and the vendors' Mandarin models) write them; wetext alone: 2024/03/15,
    3:15p.m., 48h, 3.5kg, 3.1刻 (for a quarter past three), 32°, 117:116, 二3~4线."""
    assert numbers_to_digits("二零二四年三月十五号，我们去了北京。", "zh") == "2024年3月15号，我们去了北京。"
    assert numbers_to_digits("今天下午三点十五分开会", "zh") == "今天下午3点15分开会"
    assert numbers_to_digits("凌晨三点零五分到十二点半", "zh") == "凌晨3点05分到12点半"
    assert numbers_to_digits("三点一刻", "zh") == "3点一刻"
    assert numbers_to_digits("四十八小时跑了三点五公里", "zh") == "48小时跑了3.5公里"
    assert numbers_to_digits("设定三十二度", "zh") == "设定32度"
    assert numbers_to_digits("马龙以一百一十七比一百一十六收获", "zh") == "马龙以117比116收获"
    assert numbers_to_digits("一周签约五万套", "zh") == "一周签约50000套"  # as wetext (and score.py) write it
    # Approximate ranges stay as said; percentages and fractions keep wetext's form.
    assert numbers_to_digits("很多二三四线城市，三五个人", "zh") == "很多二三四线城市，三五个人"
    assert numbers_to_digits("涨了百分之七点五，占三分之一", "zh") == "涨了7.5%，占1/3"


def test_chinese_numerals_read_as_one_number() -> None:
    said = ("十五", "二十", "一百零五", "一百五", "三千二", "两千零五", "三万零五百")
    assert [cardinal(t) for t in said] == [15, 20, 105, 150, 3200, 2005, 30500]
    assert cardinal("三亿五千万") == 350_000_000
    assert cardinal("三五") is None  # a range: two numbers
    assert cardinal("十十") is None
    assert written_span("二零二四年三月", "date") == "2024年3月"
    assert written_span("三四线", "measure") is None  # a range: no digit form


def test_punctuation_helpers() -> None:
    assert strip_punctuation("你好，世界！我用 iPhone 手机。") == "你好世界我用iPhone手机"
    assert strip_punctuation("Don't stop, it's 3.5 well-known.") == "Don't stop it's 3.5 well known"
    assert to_chinese_punctuation("你好,世界.") == "你好，世界。"
    # A Chinese transcript's marks after numbers and Latin words too, and no space between characters.
    assert to_chinese_punctuation("拨打42589945.") == "拨打42589945。"
    assert to_chinese_punctuation("增长了3.5%, 达到A&M, U&J") == "增长了3.5%，达到A&M，U&J"
    assert to_chinese_punctuation("美国U.S.的3.5倍, 1,000元") == "美国U.S.的3.5倍，1,000元"
    assert to_chinese_punctuation("火鸟 爱 概念车") == "火鸟爱概念车"


def test_repetition_loops_are_cut() -> None:
    assert cut_repetitions("好的好的好的好的好的好的") == "好的"
    assert cut_repetitions("谢谢谢谢") == "谢谢谢谢"  # twice is speech, not a loop


def test_hot_word_correction_by_sound_and_spelling() -> None:
    bias = hotwords.plan((HotWord(text="盛源", weight=8),), ())
    assert hotwords.correct("盛员生活广场", bias) == "盛源生活广场"
    assert hotwords.correct("今天天气很好", bias) == "今天天气很好"  # nothing sounds like it
    english = hotwords.plan((), ("Jenson",))
    assert hotwords.correct("Most of Jensen's letters", english) == "Most of Jenson's letters"
    weak = hotwords.plan((HotWord(text="张三丰", weight=1),), ())
    assert hotwords.correct("他叫李四", weak) == "他叫李四"


def test_each_correction_is_offered_on_its_own() -> None:
    """``corrections``: the candidates the second pass judges, one phrase corrected in each (strongest
    first); ``respell`` only writes a Latin phrase in its own case."""
    bias = hotwords.plan((HotWord(text="盛源", weight=8), HotWord(text="广厂", weight=3)), ())
    assert list(hotwords.corrections("盛员生活广场", bias)) == ["盛源生活广场", "盛员生活广厂"]
    assert list(hotwords.corrections("今天天气很好", bias)) == []
    assert list(hotwords.corrections("盛源生活广厂", bias)) == []  # both already there
    english = hotwords.plan((), ("Jenson",))
    assert list(hotwords.corrections("Most of Jensen's letters", english)) == ["Most of Jenson's letters"]
    assert hotwords.respell("most of jenson's letters", english) == "most of Jenson's letters"
    assert hotwords.respell("Most of Jensen's letters", english) == "Most of Jensen's letters"


def test_a_large_plan_corrects_as_its_phrases_would_one_by_one() -> None:
    """From ``_INDEXED_FROM`` phrases on, the Chinese ones are compared with the text all at once; the
    text that comes out is the one each phrase in turn would leave (a Baidu vocabulary holds 10,000)."""
    said = "从政策实施的难易程度上来说今天天气很好我们去盛员生活广场买三星手机"
    # Phrases that sound like stretches of it (one syllable changed), ones that are in it, mixed and
    # English ones, single characters: every kind the correction treats differently, at several weights.
    alike = {"政": "正", "施": "师", "度": "肚", "员": "源", "场": "厂", "机": "鸡", "天": "田", "买": "卖"}
    phrases: list[HotWord] = []
    for size in (2, 3, 4):
        for start in range(0, len(said) - size + 1, 2):
            stretch = said[start : start + size]
            heard = "".join(alike.get(c, c) for c in stretch)
            phrases.append(HotWord(text=heard, weight=1 + (start + size) % 10))
    phrases += [HotWord(text=t, weight=8) for t in ("三星Pay", "A M内", "天", "Jenson", "盛源生活")]
    bias = hotwords.plan(phrases, ())
    assert len(bias.favoured) >= hotwords._INDEXED_FROM
    # The first of two stretches as like the phrase is the one replaced (盛员…盛员).
    texts = [said, "盛员生活广场的三星皮鞋", "盛员生活和盛员生活", "Most of Jensen's letters", "今天A M内"]
    for text in texts:
        one_by_one = text
        for word in bias.favoured:
            one_by_one = hotwords.correct(one_by_one, hotwords.BiasPlan((word,), ()))
        assert hotwords.correct(text, bias) == one_by_one
        each = [hotwords.correct(text, hotwords.BiasPlan((word,), ())) for word in bias.favoured]
        assert list(hotwords.corrections(text, bias)) == [t for t in each if t != text]
    assert hotwords.correct("盛员生活广场的三星皮鞋", bias) != "盛员生活广场的三星皮鞋"


def test_a_chunk_missed_only_the_phrases_its_readings_hint_at() -> None:
    """Which phrases go into the prompt of a chunk's second decode (ChunkDecoder._prompt_hot_words)."""
    name, author = HotWord(text="盛源", weight=1), HotWord(text="Jenson", weight=1)
    bias = hotwords.plan((name, author, HotWord(text="退款", weight=1)), ())
    [sheng_yuan, jenson, _] = bias.favoured
    # Heard something like it in a reading (the beam's runner-up), but not in the chosen text.
    assert hotwords.missed("今天天气很好", ["今天天气很好", "圣言生活广场"], bias) == (sheng_yuan,)
    assert hotwords.missed("Most of the letters", ["Most of Jensen's letters"], bias) == (jenson,)
    assert hotwords.missed("Most of the letters", ["Most of these letters"], bias) == ()
    # Already said, or as the correction will write it: nothing to find.
    assert hotwords.missed("盛源生活广场", ["圣言生活广场"], bias) == ()
    assert hotwords.missed("盛员生活广场", ["盛员生活广场"], bias) == ()
    assert hotwords.missed("Most of Jensen's letters", ["Most of Jensen's letters"], bias) == ()
    # Nothing like any phrase; and a suppressed phrase is never prompted for.
    assert hotwords.missed("今天天气很好", ["今天天气很好"], bias) == ()
    assert hotwords.missed("圣言生活广场", ["圣言生活广场"], hotwords.plan((), ())) == ()
    suppressed = hotwords.plan((HotWord(text="盛源", weight=-5),), ())
    assert hotwords.missed("圣言生活广场", ["圣言生活广场"], suppressed) == ()
    assert hotwords.holds("盛员生活广场", (sheng_yuan,)) and not hotwords.holds("圣言生活广场", (sheng_yuan,))


def test_bias_plan_orders_and_splits_by_weight() -> None:
    bias = hotwords.plan(
        (HotWord(text="甲乙", weight=2), HotWord(text="丙丁", weight=9), HotWord(text="坏词", weight=-5)),
        ("戊己",),
    )
    assert [w.text for w in bias.favoured] == ["丙丁", "戊己", "甲乙"]
    assert [w.text for w in bias.suppressed] == ["坏词"]
    assert hotwords.prompt_text(bias) == "丙丁、戊己、甲乙"  # a suppressed phrase never goes into the prompt


def test_hot_word_weight_is_signed_and_grows_with_its_size() -> None:
    """The rescoring bonus: positive weights raise a hypothesis holding the phrase, negative ones lower
    it, in proportion to the weight (Qiniu's factor), and nothing happens for text without the phrase."""
    from tingyin.speech.rescoring import hot_word_bonus

    def bonus(weight: float, text: str = "调查详细的经纬") -> float:
        return hot_word_bonus(text, hotwords.plan((HotWord(text="经纬", weight=weight),), ()))

    raised = [bonus(w) for w in range(1, 11)]
    lowered = [bonus(-w) for w in range(1, 11)]
    assert all(a < b for a, b in itertools.pairwise(raised)) and raised[0] > 0
    assert all(a > b for a, b in itertools.pairwise(lowered)) and lowered[0] < 0
    assert bonus(5, "调查详细的警卫") == bonus(-5, "调查详细的警卫") == 0.0
    both = hotwords.plan((HotWord(text="经纬", weight=3), HotWord(text="详细", weight=-1)), ())
    assert hotwords.weight_in("调查详细的經緯", both) == 2.0  # Traditional counts as Simplified


ALIKES = ("经纬", "近卫", "敬畏", "精卫", "禁卫", "泾渭", "惊喂", "井卫", "径为", "静谓")


def test_suppressed_phrase_gets_sound_alike_alternatives_in_context() -> None:
    """A negative weight adds readings with the phrase replaced (chosen by the rewriter with the rest of the
    text kept); it never removes the phrase from the text itself."""
    seen: list[tuple[str, tuple[str, ...]]] = []

    def rewrite(text: str, keep: tuple[str, ...]) -> list[str]:
        seen.append((text, keep))
        return [text.replace("警卫", alike) for alike in ALIKES]

    bias = hotwords.plan((HotWord(text="警卫", weight=-5),), ())
    found = hotwords.alternatives("我们在调查2个警卫的事", bias, rewrite)
    assert found == [f"我们在调查2个{alike}的事" for alike in ALIKES[: hotwords.STEER_ALIKES]]
    assert seen == [("我们在调查2个警卫的事", ("我们在调查", "个", "的事"))]  # only the phrase may change
    assert hotwords.alternatives("今天天气很好", bias, rewrite) == []
    assert hotwords.correct("我们在调查2个警卫的事", bias) == "我们在调查2个警卫的事"


def test_biased_choice_keeps_the_beams_order_without_hot_words() -> None:
    from tingyin.speech.rescoring import biased_choice
    from tingyin.speech.whisper import Hypothesis

    beam = [
        Hypothesis([1], "Most of Jensen's letters", -3.0),
        Hypothesis([2], "Most of Jenson's letters", -4.5),
    ]
    assert biased_choice(beam, hotwords.plan((), ())) is beam[0]
    assert biased_choice(beam, hotwords.plan((HotWord(text="Jenson", weight=1),), ())) is beam[0]
    assert biased_choice(beam, hotwords.plan((HotWord(text="Jenson", weight=5),), ())) is beam[1]
    assert biased_choice(beam, hotwords.plan((HotWord(text="Jensen", weight=-5),), ())) is beam[1]
    assert biased_choice([], hotwords.plan((), ())).text == ""


def test_homophone_correction_fixes_non_words_and_keeps_good_text() -> None:
    lexicon = Lexicon()
    assert correct_homophones(lexicon, "中国正监会召开新闻发布会") == "中国证监会召开新闻发布会"
    good = "金融系统似乎也在加大对房地产的投资力度"
    assert correct_homophones(lexicon, good) == good


def test_scoring_conventions() -> None:
    # Chinese: punctuation, spaces, script and number form do not count.
    assert scoring_units("观察30年來的曲線。", "CER") == list("观察三十年来的曲线")
    assert scoring_units("S A M S U N G", "CER") == scoring_units("Samsung", "CER")
    assert error_rate(["马龙以一百一十七比一百一十六"], ["马龙以117比116。"], "CER") == 0.0
    # English: case, punctuation, number form and "and" inside numbers do not count.
    assert normalize_en("Six hundred twenty-nine; Mr. Neild") == normalize_en(
        "six hundred and twenty nine Mr Neild"
    )
    counts = edit_counts(["a", "b", "c"], ["a", "x", "c", "d"])
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 0, 1)
