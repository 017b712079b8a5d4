"""Per-app custom vocabulary through the native API and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import Server


def test_vocabulary_api_and_cli(server: Server, tmp_path: Path) -> None:
    app = server.create_app("vocab-owner")
    headers = {"Authorization": f"Bearer {app['app_token']}"}
    url = f"{server.url}/v1/vocabulary"
    assert httpx.get(url, headers=headers).json() == {"phrases": [], "count": 0}

    text = "哈根达斯\n\n科大讯飞\n哈根达斯\n  LJSpeech  \n"
    saved = httpx.put(url, headers={**headers, "Content-Type": "text/plain"}, content=text.encode()).json()
    assert saved == {"phrases": ["哈根达斯", "科大讯飞", "LJSpeech"], "count": 3}
    as_json = httpx.put(url, headers=headers, json={"phrases": ["北京科技馆"]}).json()
    assert as_json["phrases"] == ["北京科技馆"]

    too_many = "\n".join(f"词{i}" for i in range(10_001))
    refused = httpx.put(url, headers={**headers, "Content-Type": "text/plain"}, content=too_many.encode())
    assert refused.status_code == 400 and "10000" in refused.json()["error"]["message"]
    too_long = httpx.put(url, headers=headers, json={"phrases": ["长" * 51]})
    assert too_long.status_code == 400
    assert httpx.get(url, headers=headers).json()["phrases"] == ["北京科技馆"]

    other = server.create_app("vocab-neighbour")
    assert httpx.get(url, headers={"Authorization": f"Bearer {other['app_token']}"}).json()["count"] == 0

    lines = tmp_path / "words.txt"
    lines.write_text("\n".join(f"术语{i}" for i in range(10_000)), encoding="utf-8")
    shown = json.loads(server.cli("apps", "vocab", "vocab-owner", "--file", str(lines)).stdout)
    assert shown["count"] == 10_000
    assert httpx.get(url, headers=headers).json()["count"] == 10_000
    cleared = json.loads(server.cli("apps", "vocab", "vocab-owner", "--clear").stdout)
    assert cleared["count"] == 0


def test_spoken_vocabulary_phrase_comes_out_exactly(server: Server) -> None:
    """BAC009S0150W0016 says 盛源生活广场; the plain model writes the name with other characters."""
    import base64

    import numpy as np

    from tests.conftest import FIXTURES
    from tingyin import audio

    samples = audio.decode(FIXTURES / "speech" / "BAC009S0150W0016.flac").samples
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()

    def recognise(app: dict[str, str]) -> str:
        token = server.access_token(app)
        answer = httpx.post(
            f"{server.url}/server_api",
            json={
                "format": "pcm",
                "rate": 16000,
                "channel": 1,
                "cuid": "vocab",
                "token": token,
                "dev_pid": 1537,
                "speech": base64.b64encode(pcm).decode(),
                "len": len(pcm),
            },
            timeout=300,
        ).json()
        assert answer["err_no"] == 0, answer
        return str(answer["result"][0])

    plain_app = server.create_app("vocab-plain")
    assert "盛源" not in recognise(plain_app)
    tuned_app = server.create_app("vocab-tuned")
    headers = {"Authorization": f"Bearer {tuned_app['app_token']}"}
    httpx.put(f"{server.url}/v1/vocabulary", headers=headers, json={"phrases": ["盛源生活广场", "科大讯飞"]})
    assert "盛源生活广场" in recognise(tuned_app)
