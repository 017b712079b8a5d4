"""The official ``openai`` SDK pointed at the shared test server, and real audio to send it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from openai import OpenAI
from scipy.io import wavfile

from tests.conftest import FIXTURES, Server
from tingyin.audio import decode

RATE = 16000
SPEAKER_A = ["BAC009S0150W0191", "BAC009S0150W0158", "BAC009S0150W0209"]
SPEAKER_B = ["BAC009S0252W0279", "BAC009S0252W0111", "BAC009S0252W0358"]


def client_for(server: Server, app: dict[str, str], **options: object) -> OpenAI:
    return OpenAI(
        base_url=f"{server.url}/v1", api_key=app["app_token"], max_retries=0, timeout=600, **options
    )  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def client(server: Server, demo_app: dict[str, str]) -> OpenAI:
    return client_for(server, demo_app)


def write_wav(path: Path, samples: np.ndarray) -> Path:
    wavfile.write(path, RATE, (np.clip(samples, -1, 1) * 32767).astype(np.int16))
    return path


class Conversation:
    """Two AISHELL speakers taking turns (A, B, A, B...): a wav file and the clip boundaries as the
    reference turns (seconds)."""

    def __init__(self, path: Path, turns: list[tuple[float, float, str]]) -> None:
        self.path = path
        self.turns = turns

    def reference(self) -> dict[str, list[tuple[float, float]]]:
        speakers: dict[str, list[tuple[float, float]]] = {}
        for start, end, name in self.turns:
            speakers.setdefault(name, []).append((start, end))
        return speakers


def conversation(directory: Path, order: list[str], name: str) -> Conversation:
    pieces, turns, position = [], [], 0
    for clip in order:
        samples = decode(FIXTURES / "diarization" / f"{clip}.flac").samples
        turns.append((position / RATE, (position + len(samples)) / RATE, "A" if clip in SPEAKER_A else "B"))
        pieces.append(samples)
        position += len(samples)
    return Conversation(write_wav(directory / f"{name}.wav", np.concatenate(pieces)), turns)


@pytest.fixture(scope="session")
def six_turns(tmp_path_factory: pytest.TempPathFactory) -> Conversation:
    """A, B, A, B, A, B: about 28 s."""
    order = [SPEAKER_A[0], SPEAKER_B[0], SPEAKER_A[1], SPEAKER_B[1], SPEAKER_A[2], SPEAKER_B[2]]
    return conversation(tmp_path_factory.mktemp("conversation"), order, "six-turns")


@pytest.fixture(scope="session")
def two_turns(tmp_path_factory: pytest.TempPathFactory) -> Conversation:
    """A then B: about 9 s."""
    return conversation(tmp_path_factory.mktemp("conversation"), [SPEAKER_A[0], SPEAKER_B[1]], "two-turns")


SPEECH = FIXTURES / "speech"
