"""A running ``tingyin serve`` seen from outside, for the evaluation scripts: start one (or use one), call its
vendor APIs over HTTP, serve files to it, and read its memory from /proc.

Only the wire formats are used, so the scripts measure whatever engine the server runs.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

if TYPE_CHECKING:
    from tingyin.eval.recordings import Recording, Segment

VOLCANO_LANGUAGE = {"zh": "zh-CN", "en": "en-US"}


def load_average() -> str:
    """``uptime``'s three load averages."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------- memory


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/*/stat)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    tree, stack = [], [pid]
    while stack:
        current = stack.pop()
        tree.append(current)
        stack.extend(children.get(current, []))
    return tree


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid``'s process tree in MB (VmRSS summed; 0 for processes gone)."""
    total_kb = 0
    for member in process_tree(pid):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
        except OSError:
            continue
    return total_kb / 1024


class RssSampler:
    """Samples a process tree's RSS every ``interval_s`` in a thread and keeps the peak; calls ``on_limit``
    once when it passes ``limit_mb``."""

    def __init__(
        self,
        pid: int,
        interval_s: float = 0.2,
        *,
        limit_mb: float | None = None,
        on_limit: Callable[[], None] | None = None,
    ) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.limit_mb = limit_mb
        self.on_limit = on_limit
        self.limit_hit: float | None = None  # the RSS seen when the limit was passed
        self._peak = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current_mb(self) -> float:
        return round(rss_mb(self.pid), 1)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            value = rss_mb(self.pid)
            with self._lock:
                self._peak = max(self._peak, value)
            if self.limit_mb is not None and value > self.limit_mb and self.limit_hit is None:
                self.limit_hit = round(value, 1)
                if self.on_limit is not None:
                    self.on_limit()

    def take_peak_mb(self) -> float:
        """The peak since the last call (or the start), and start a new period."""
        with self._lock:
            peak, self._peak = self._peak, rss_mb(self.pid)
        return round(max(peak, self._peak), 1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ---------------------------------------------------------------- requests


@dataclass(frozen=True)
class Transcription:
    """A finished (or failed) long-file transcription."""

    text: str
    segments: list[Segment]
    wall_s: float
    failure: str | None = None


@dataclass(frozen=True)
class Answer:
    """One synchronous request: HTTP status, the vendor's code, the text, the time it took."""

    status: int
    code: int | str | None
    text: str
    wall_s: float
    failure: str | None = None


@dataclass
class Burst:
    """Answers of a burst of concurrent requests."""

    answers: list[Answer] = field(default_factory=list)
    wall_s: float = 0.0

    def summary(self) -> dict[str, Any]:
        codes: dict[str, int] = {}
        for answer in self.answers:
            codes[str(answer.code)] = codes.get(str(answer.code), 0) + 1
        times = [a.wall_s for a in self.answers]
        return {
            "requests": len(self.answers),
            "http_5xx": sum(a.status >= 500 for a in self.answers),
            "no_answer": sum(a.status == 0 for a in self.answers),
            "vendor_codes": codes,
            "max_request_s": round(max(times), 2) if times else None,
            "mean_request_s": round(sum(times) / len(times), 2) if times else None,
            "burst_wall_s": round(self.wall_s, 2),
            "failures": sorted({a.failure for a in self.answers if a.failure})[:5],
        }


def concurrent(call: Callable[[Any], Answer], items: Iterable[Any]) -> Burst:
    """Run ``call`` on every item at once (one thread each)."""
    work = list(items)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, len(work))) as pool:
        answers = list(pool.map(call, work))
    return Burst(answers, time.perf_counter() - started)


def pcm16(samples: np.ndarray) -> bytes:
    from tingyin.audio import to_pcm16

    return to_pcm16(samples).tobytes()


def looped_wav(samples: np.ndarray, size_bytes: int, *, rate: int = 16000, channels: int = 1) -> bytes:
    """A 16-bit WAV of ``samples`` (16 kHz mono) looped to ``size_bytes`` (header included), at ``rate``
    with ``channels`` identical channels."""
    from tingyin.audio import encode_wav, resample

    source = resample(samples, 16000, rate) if rate != 16000 else samples
    count = max(1, (size_bytes - 44) // (2 * channels))
    repeats = -(-count // source.shape[0])
    looped = np.tile(source, repeats)[:count]
    return encode_wav(looped if channels == 1 else np.stack([looped] * channels), rate)


def sami_wav(samples: np.ndarray, size_bytes: int) -> bytes:
    """The load part's SAMI upload of ``size_bytes``: 16 kHz mono while that stays within SAMI's 600 s,
    else CD audio (44.1 kHz stereo, what a 100 MB-class music file is: 100 MB last 594 s)."""
    if (size_bytes - 44) / (2 * 16000) <= 600:
        return looped_wav(samples, size_bytes)
    return looped_wav(samples, size_bytes, rate=44100, channels=2)


class _Files:
    """Recordings served over HTTP on 127.0.0.1 (a thread of this process)."""

    def __init__(self, recordings: Sequence[Recording]) -> None:
        folders = {r.path.parent for r in recordings if r.path is not None}
        if len(folders) != 1:
            raise ValueError("the recordings must lie in one folder")
        folder = str(next(iter(folders)))

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=folder, **kwargs)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url_of(self, item: Recording | Path) -> str:
        """The URL of a recording, or of another file in the recordings' folder."""
        path = item if isinstance(item, Path) else item.path
        assert path is not None
        return f"{self.url}/{path.name}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class ServerClient:
    """The vendor APIs of a server at ``url`` for one app (``credentials``: `tingyin apps create`'s JSON)."""

    def __init__(self, url: str, credentials: dict[str, str], pid: int | None = None) -> None:
        self.url = url.rstrip("/")
        self.credentials = credentials
        self.pid = pid
        self._http = httpx.Client(timeout=httpx.Timeout(600.0, connect=30.0))
        self._baidu_token: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"url": self.url, "pid": self.pid}

    @contextmanager
    def files(self, recordings: Sequence[Recording]) -> Iterator[_Files]:
        """Serve ``recordings`` to the server (it must allow 127.0.0.1: ``TINGYIN_FETCH_ALLOW``)."""
        served = _Files(recordings)
        try:
            yield served
        finally:
            served.close()

    # Volcano AUC (seed 002): submit a URL, poll the query until the task ends.
    def transcribe_volcano(
        self, audio_url: str, language: str, *, speakers: bool = True, timeout_s: float = 3600.0
    ) -> Transcription:
        from tingyin.eval.recordings import Segment

        app = self.credentials
        started = time.perf_counter()
        submit = self._http.post(
            f"{self.url}/api/v1/auc/submit",
            json={
                "app": {"appid": app["app_id"], "token": app["app_token"], "cluster": "volc_auc_common"},
                "user": {"uid": "tingyin-eval"},
                "audio": {"format": "wav", "url": audio_url},
                "additions": {
                    "language": VOLCANO_LANGUAGE[language],
                    "with_speaker_info": "True" if speakers else "False",
                },
            },
        ).json()["resp"]
        if submit.get("code") != 1000:
            return Transcription("", [], time.perf_counter() - started, f"submit {submit}")
        while time.perf_counter() - started < timeout_s:
            resp = self._http.post(
                f"{self.url}/api/v1/auc/query",
                json={
                    "appid": app["app_id"],
                    "token": app["app_token"],
                    "cluster": "volc_auc_common",
                    "id": submit["id"],
                },
            ).json()["resp"]
            if resp["code"] in (2000, 2001):
                time.sleep(0.25)
                continue
            wall = time.perf_counter() - started
            if resp["code"] != 1000:
                return Transcription("", [], wall, f"{resp['code']} {resp.get('message', '')}")
            segments = [
                Segment(
                    u["start_time"] / 1000,
                    u["end_time"] / 1000,
                    u["text"],
                    (u.get("additions") or {}).get("speaker"),
                )
                for u in resp.get("utterances", [])
            ]
            return Transcription(resp.get("text", ""), segments, wall)
        return Transcription("", [], time.perf_counter() - started, f"no answer in {timeout_s:.0f} s")

    # Baidu short speech (seed 001): OAuth token, then JSON with base64 PCM.
    def _token(self) -> str:
        if self._baidu_token is None:
            answer = self._http.get(
                f"{self.url}/oauth/2.0/token",
                params={
                    "grant_type": "client_credentials",
                    "client_id": self.credentials["api_key"],
                    "client_secret": self.credentials["secret_key"],
                },
            ).json()
            self._baidu_token = str(answer["access_token"])
        return self._baidu_token

    def recognize_baidu(self, samples: np.ndarray, path: str, dev_pid: int) -> Answer:
        data = pcm16(samples)
        body = {
            "format": "pcm",
            "rate": 16000,
            "channel": 1,
            "cuid": "tingyin-eval",
            "dev_pid": dev_pid,
            "token": self._token(),
            "speech": base64.b64encode(data).decode(),
            "len": len(data),
        }
        return self._post(path, body, lambda a: (a.get("err_no"), "".join(a.get("result") or [])))

    # SAMI MusicTagging (seed 004): the seed's request with the audio inline, every dimension this server
    # answers (Genre17, Lang24 and the Theme lists are refused as not supported: no published or scorable
    # tags).
    def tag_sami(self, audio_bytes: bytes) -> Answer:
        tasks = ["Genre34", "Mood10", "Lang30", "Vocal", "MTT"]
        body = {
            "appkey": self.credentials["api_key"],
            "token": self.credentials["app_token"],
            "namespace": "MusicTagging",
            "payload": json.dumps(
                {"task_flow": {"type": "merge", "task": [{"task_type": f"MusicTagging{t}"} for t in tasks]}}
            ),
            "data": base64.b64encode(audio_bytes).decode(),
        }
        return self._post("/api/v1/invoke", body, lambda a: (a.get("status_code"), a.get("status_text", "")))

    def _post(
        self, path: str, body: dict[str, Any], read: Callable[[dict[str, Any]], tuple[Any, str]]
    ) -> Answer:
        started = time.perf_counter()
        try:
            response = self._http.post(f"{self.url}{path}", json=body)
        except httpx.HTTPError as exc:
            return Answer(0, None, "", time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
        wall = time.perf_counter() - started
        try:
            code, text = read(response.json())
        except ValueError:
            return Answer(response.status_code, None, "", wall, f"not JSON: {response.text[:200]}")
        failure = None if response.status_code == 200 and code in (0, 20000000) else f"{code} {text}"[:300]
        return Answer(response.status_code, code, text, wall, failure)

    def start(self) -> None:
        pass

    def restart(self) -> bool:
        """Start the server afresh, with empty caches, where it was started here (:class:`LocalServer`);
        False where it cannot be."""
        return False

    def alive(self) -> bool:
        return self.pid is None or Path(f"/proc/{self.pid}").exists()

    def kill(self) -> None:
        """Stop the server at once; only one started here is stopped (see :class:`LocalServer`)."""

    def stop(self) -> None:
        self._http.close()


class RemoteServer(ServerClient):
    """A server someone else started (``--url``); its pid only when given."""


class LocalServer(ServerClient):
    """A ``tingyin serve`` started here on a free port with a throwaway home (SQLite, embedded worker), the
    given thread count, and fetching from 127.0.0.1 allowed; one app created for the run."""

    def __init__(
        self,
        home: Path,
        *,
        threads: int,
        models_dir: Path | None,
        log: Callable[[str], None] = print,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"http://127.0.0.1:{free_port()}", {})
        self.home = home
        self.log = log
        self.env = {
            **os.environ,
            "TINGYIN_HOME": str(home),
            "TINGYIN_CPU_THREADS": str(threads),
            "TINGYIN_FETCH_ALLOW": "127.0.0.1",
            "TINGYIN_LOG_LEVEL": "WARNING",
            **({"TINGYIN_MODELS_DIR": str(models_dir)} if models_dir else {}),
            **(extra_env or {}),
        }
        for name in ("TINGYIN_DATABASE_URL", "TINGYIN_BROKER_URL", "TINGYIN_REDIS_URL", "TINGYIN_PORT"):
            self.env.pop(name, None)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home.parent / "server.log"

    def start(self, timeout_s: float = 300.0) -> None:
        import shutil

        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        port = self.url.rsplit(":", 1)[1]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tingyin.cli", "serve", "--port", port],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid = self.process.pid
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        else:
            raise RuntimeError(f"the server was not ready in {timeout_s:.0f} s (log: {self.log_path})")
        created = subprocess.run(
            [sys.executable, "-m", "tingyin.cli", "apps", "create", "eval"],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        self.credentials = dict(json.loads(created.stdout))
        self.log(f"server {self.url} (pid {self.pid}, home {self.home}, log {self.log_path})")

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "pid": self.pid,
            "started_here": True,
            "cpu_threads": self.env["TINGYIN_CPU_THREADS"],
        }

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.alive():
            assert self.process is not None
            os.killpg(self.process.pid, signal.SIGKILL)

    def restart(self) -> bool:
        self._stop_process()
        self._baidu_token = None  # the new home has a new app
        self.start()
        return True

    def stop(self) -> None:
        super().stop()
        self._stop_process()

    def _stop_process(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
