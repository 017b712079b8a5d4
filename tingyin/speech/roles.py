"""Call-centre roles: which speaker is the agent (坐席, "S") and which the customer (客户, "C").

Decided from what each speaker says: agents greet, offer help, name their company or job number, ask
callers to wait and thank them for calling; customers ask, complain and talk about "my order". Each
phrase found adds to a speaker's agent or customer score (phrases in a speaker's first utterance
count double: the opening line is the strongest cue). The speaker with the highest agent-minus-customer
score is the agent and everyone else a customer; with no cue at all the first speaker is taken as
the agent, because agents open inbound calls. Phrase lists are configurable (Chinese and English
defaults; :meth:`RolePhrases.from_file` reads a JSON file with ``agent``/``customer``/``company`` lists).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tingyin.errors import InvalidRequest
from tingyin.speech.types import Utterance

AGENT = "S"
CUSTOMER = "C"

_AGENT_ZH = (
    "很高兴为您服务",
    "为您服务",
    "有什么可以帮您",
    "有什么可以帮到您",
    "有什么能帮您",
    "有什么需要帮助",
    "请问有什么",
    "工号",
    "客服",
    "坐席",
    "欢迎致电",
    "欢迎来电",
    "感谢您的来电",
    "感谢来电",
    "感谢您的耐心等待",
    "请您稍等",
    "请稍等",
    "稍等一下",
    "耐心等待",
    "帮您查询",
    "帮您查一下",
    "为您查询",
    "给您查",
    "为您办理",
    "给您办理",
    "帮您办理",
    "为您核实",
    "帮您核实",
    "核实一下",
    "请问您是",
    "请问您贵姓",
    "请问怎么称呼",
    "您的手机号",
    "您的订单号",
    "请提供",
    "还有其他可以帮您",
    "还有什么可以帮您",
    "还有其他问题吗",
    "还有其他需要",
    "祝您生活愉快",
    "祝您",
    "满意度",
    "对我的服务",
    "给您带来不便",
    "非常抱歉",
    "这边是",
    "这里是",
    "我们这边",
    "给您反馈",
    "为您记录",
    "您这边",
)
_CUSTOMER_ZH = (
    "我想问一下",
    "我想问问",
    "我想咨询",
    "我想了解",
    "我想办",
    "我要办",
    "我要投诉",
    "投诉",
    "我的订单",
    "我的账户",
    "我的账号",
    "我的手机",
    "我的卡",
    "我买的",
    "我上次",
    "我之前",
    "我收到",
    "没有收到",
    "没收到",
    "怎么回事",
    "为什么",
    "我要退",
    "退款",
    "退货",
    "能不能帮我",
    "帮我查",
    "帮我看",
    "你们公司",
    "你们那边",
    "你们的",
    "你们",
    "我打电话",
    "我打过",
    "一直没有",
    "到底",
    "我想知道",
    "我想换",
    "我不想",
)
_AGENT_EN = (
    "how can i help",
    "how may i help",
    "how can i assist",
    "how may i assist",
    "what can i do for you",
    "thank you for calling",
    "thanks for calling",
    "thank you for holding",
    "thanks for holding",
    "welcome to",
    "speaking",
    "is there anything else",
    "anything else i can",
    "let me check",
    "let me look",
    "let me pull up",
    "one moment",
    "bear with me",
    "please hold",
    "can i have your",
    "may i have your",
    "could i have your",
    "can i get your",
    "verify your",
    "for security",
    "account number",
    "i apologize",
    "sorry for the inconvenience",
    "have a nice day",
    "have a great day",
    "i can help you",
)
_CUSTOMER_EN = (
    "i'm calling about",
    "i am calling about",
    "i'm calling because",
    "i am calling because",
    "calling to",
    "i want to",
    "i'd like to",
    "i would like to",
    "my order",
    "my account",
    "my card",
    "my bill",
    "i have a problem",
    "i need help",
    "refund",
    "complaint",
    "complain",
    "doesn't work",
    "does not work",
    "why is",
    "why did",
    "you guys",
    "your company",
    "i never received",
    "i didn't receive",
    "i was charged",
)


def _normalise(text: str) -> str:
    """Lower-case, full-width folded, punctuation dropped; spaces kept single (English phrases need them)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _compact(text: str) -> str:
    """Chinese matching ignores spaces altogether (ASR puts them in odd places)."""
    return text.replace(" ", "")


@dataclass(frozen=True)
class RolePhrases:
    """Phrase lists that mark an agent or a customer. ``company`` holds the operator's own names
    (company, product, hotline): a speaker who says them is taken for the agent."""

    agent: tuple[str, ...] = _AGENT_ZH + _AGENT_EN
    customer: tuple[str, ...] = _CUSTOMER_ZH + _CUSTOMER_EN
    company: tuple[str, ...] = ()
    company_weight: float = 2.0
    opening_weight: float = 2.0  # multiplier for cues in a speaker's first utterance

    def extended(
        self, *, agent: Iterable[str] = (), customer: Iterable[str] = (), company: Iterable[str] = ()
    ) -> RolePhrases:
        """A copy with more phrases added to the defaults."""
        return replace(
            self,
            agent=self.agent + tuple(agent),
            customer=self.customer + tuple(customer),
            company=self.company + tuple(company),
        )

    @classmethod
    def from_file(cls, path: Path, *, replace_defaults: bool = False) -> RolePhrases:
        """Phrases from a JSON object ``{"agent": [...], "customer": [...], "company": [...]}``; added to
        the defaults unless ``replace_defaults``."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidRequest(f"cannot read role phrases from {path}: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidRequest(f"{path}: role phrases must be a JSON object")
        lists: dict[str, tuple[str, ...]] = {}
        for key in ("agent", "customer", "company"):
            values = data.get(key, [])
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise InvalidRequest(f"{path}: {key!r} must be a list of strings")
            lists[key] = tuple(values)
        if replace_defaults:
            return cls(agent=lists["agent"], customer=lists["customer"], company=lists["company"])
        return cls().extended(agent=lists["agent"], customer=lists["customer"], company=lists["company"])


DEFAULT_ROLE_PHRASES = RolePhrases()


def _hits(text: str, phrases: Sequence[str]) -> int:
    normalised = _normalise(text)
    compact = _compact(normalised)
    count = 0
    for phrase in phrases:
        key = _normalise(phrase)
        if not key:
            continue
        if key.isascii():
            # English phrases match whole words only ("speaking" not in "spanking-new" fragments).
            count += len(re.findall(rf"(?<![\w']){re.escape(key)}(?![\w'])", normalised))
        else:
            count += compact.count(_compact(key))
    return count


def role_scores(utterances: Sequence[Utterance], phrases: RolePhrases | None = None) -> dict[int, float]:
    """Agent-minus-customer cue score per speaker (utterances without a speaker are skipped)."""
    phrases = phrases or DEFAULT_ROLE_PHRASES
    scores: dict[int, float] = {}
    seen: set[int] = set()
    for utterance in sorted(utterances, key=lambda u: u.start_ms):
        if utterance.speaker is None:
            continue
        weight = phrases.opening_weight if utterance.speaker not in seen else 1.0
        seen.add(utterance.speaker)
        agent = _hits(utterance.text, phrases.agent) + phrases.company_weight * _hits(
            utterance.text, phrases.company
        )
        customer = _hits(utterance.text, phrases.customer)
        scores[utterance.speaker] = scores.get(utterance.speaker, 0.0) + weight * (agent - customer)
    return scores


def assign_roles(utterances: list[Utterance], phrases: RolePhrases | None = None) -> dict[int, str]:
    """Speaker → "S" (agent) or "C" (customer). Exactly one speaker is the agent when any speaker is
    known: the one with the strongest agent cues, or the first to speak when no speaker shows any."""
    scores = role_scores(utterances, phrases)
    if not scores:
        return {}
    first_spoken: dict[int, int] = {}
    for utterance in utterances:
        if utterance.speaker is not None:
            first_spoken[utterance.speaker] = min(
                first_spoken.get(utterance.speaker, utterance.start_ms), utterance.start_ms
            )
    order = sorted(scores, key=lambda speaker: first_spoken[speaker])
    if all(score == 0 for score in scores.values()):
        agent = order[0]
    elif len(scores) == 1:
        # A lone speaker is a customer only when they sound like one.
        agent = order[0] if scores[order[0]] >= 0 else -1
    else:
        agent = max(order, key=lambda speaker: (scores[speaker], -order.index(speaker)))
    return {speaker: AGENT if speaker == agent else CUSTOMER for speaker in order}


def texts_by_role(
    utterances: Sequence[Utterance], roles: dict[int, str], separator: str = ""
) -> dict[str, str]:
    """All text of each role ("S", "C") in time order, for Qiniu's ``s_text`` / ``c_text``."""
    parts: dict[str, list[str]] = {AGENT: [], CUSTOMER: []}
    for utterance in sorted(utterances, key=lambda u: u.start_ms):
        role = roles.get(utterance.speaker) if utterance.speaker is not None else None
        if role in parts and utterance.text:
            parts[role].append(utterance.text)
    return {role: separator.join(texts) for role, texts in parts.items()}
