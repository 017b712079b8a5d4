"""Agent/customer roles from what speakers say."""

from __future__ import annotations

import json
from pathlib import Path

from tingyin.speech.roles import RolePhrases, assign_roles, role_scores, texts_by_role
from tingyin.speech.types import Utterance


def _u(text: str, start_s: float, speaker: int | None, language: str = "zh") -> Utterance:
    return Utterance(text, int(start_s * 1000), int(start_s * 1000) + 2000, [], language, speaker)


def test_chinese_call_finds_the_agent_even_when_the_customer_speaks_first() -> None:
    call = [
        _u("喂，你好", 0, 1),
        _u("您好，很高兴为您服务，请问有什么可以帮您？", 2, 2),
        _u("我想问一下我的订单怎么还没到，你们到底什么时候发货", 5, 1),
        _u("请您稍等，我帮您查询一下", 9, 2),
    ]
    roles = assign_roles(call)
    assert roles == {1: "C", 2: "S"}
    texts = texts_by_role(call, roles)
    assert texts["S"].startswith("您好，很高兴为您服务") and "我帮您查询" in texts["S"]
    assert texts["C"] == "喂，你好我想问一下我的订单怎么还没到，你们到底什么时候发货"


def test_english_call() -> None:
    call = [
        _u("Hi, I'm calling about my order, it never arrived.", 0, 1, "en"),
        _u("Thank you for calling. Let me check that for you, can I have your account number?", 3, 2, "en"),
    ]
    assert assign_roles(call) == {1: "C", 2: "S"}
    assert role_scores(call)[2] > 0 > role_scores(call)[1]


def test_no_cue_falls_back_to_first_speaker_as_agent() -> None:
    call = [
        _u("今天天气不错", 1, 2),
        _u("是啊", 3, 1),
        _u("下午去公园", 5, 2),
        _u("no speaker here", 7, None),
    ]
    assert assign_roles(call) == {2: "S", 1: "C"}
    assert assign_roles([]) == {}


def test_company_phrases_are_configurable(tmp_path: Path) -> None:
    call = [_u("喂", 0, 1), _u("这个套餐多少钱", 2, 1), _u("听音科技，请讲", 4, 2)]
    assert assign_roles(call) == {1: "S", 2: "C"}  # no default cue: first speaker wins
    phrases = RolePhrases().extended(company=["听音科技"])
    assert assign_roles(call, phrases) == {1: "C", 2: "S"}
    path = tmp_path / "phrases.json"
    path.write_text(json.dumps({"company": ["听音科技"]}), encoding="utf-8")
    assert assign_roles(call, RolePhrases.from_file(path)) == {1: "C", 2: "S"}


def test_a_lone_speaker_who_sounds_like_a_customer_is_the_customer() -> None:
    assert assign_roles([_u("我要投诉，我的快递一直没有收到", 0, 1)]) == {1: "C"}
    assert assign_roles([_u("您好，工号1024为您服务", 0, 1)]) == {1: "S"}
