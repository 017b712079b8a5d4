"""The OpenAPI document a client generator can trust: typed answers, the real error shapes, security
schemes, described upload bodies; and the inputs that once made the server answer 500. Schemathesis checks
the whole document against a running server in CI (.ci/schemathesis.sh)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import Server, bearer
from tingyin.api.app import create_app
from tingyin.api.deps import MAX_ID
from tingyin.api.openapi import path_dialect


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    mp = pytest.MonkeyPatch()
    mp.setenv("TINGYIN_HOME", str(tmp_path_factory.mktemp("openapi-home")))
    from tingyin.config import reset_settings

    reset_settings()
    try:
        return create_app().openapi()
    finally:
        mp.undo()
        reset_settings()


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, item in spec["paths"].items() for method, op in item.items()]


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _untyped_objects(spec: dict[str, Any], schema: Any, seen: set[str], where: str) -> list[str]:
    """Places in a schema that say "some object" without saying what is in it."""
    if not isinstance(schema, dict):
        return []
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        if name in seen:
            return []
        seen.add(name)
        return _untyped_objects(spec, spec["components"]["schemas"][name], seen, name)
    found = []
    if (
        not schema
        or schema.get("additionalProperties") is True
        or (
            schema.get("type") == "object"
            and "properties" not in schema
            and "additionalProperties" not in schema
        )
    ):
        found.append(where)
    for key, value in schema.items():
        if key in ("properties", "$defs"):
            for name, child in value.items():
                found += _untyped_objects(spec, child, seen, f"{where}.{name}")
        elif key in ("items", "additionalProperties"):
            found += _untyped_objects(spec, value, seen, f"{where}[]")
        elif key in ("anyOf", "oneOf", "allOf"):
            for child in value:
                found += _untyped_objects(spec, child, seen, where)
    return found


def test_native_and_openai_answers_are_typed(spec: dict[str, Any]) -> None:
    blobs = []
    for path, method, op in _operations(spec):
        dialect = path_dialect(path)
        if dialect is not None and dialect.name != "openai":
            continue  # vendor answers are documented in docs/api.md in the vendors' own terms
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            for media, content in response.get("content", {}).items():
                if media == "application/json":
                    assert content.get("schema"), (method, path)
                    blobs += [
                        f"{method} {path} {status}: {w}"
                        for w in _untyped_objects(spec, content["schema"], set(), "")
                    ]
    assert blobs == []


def test_errors_are_documented_as_answered(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and set(schemas["NativeError"]["properties"]) == {"error"}
    for path, method, op in _operations(spec):
        responses = op["responses"]
        assert "422" not in responses, (method, path)
        assert {"400", "500", "503"} <= set(responses), (method, path)
        dialect = path_dialect(path)
        expected = {None: "NativeError", "openai": "OpenAIError"}.get(
            dialect.name if dialect else None, "VendorError"
        )
        ref = responses["400"]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/" + expected), (method, path, ref)
    ids = Counter(op["operationId"] for _, _, op in _operations(spec))
    assert [name for name, count in ids.items() if count > 1] == []


def test_security_schemes_and_upload_bodies(spec: dict[str, Any]) -> None:
    schemes = spec["components"]["securitySchemes"]
    assert schemes["appToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["appToken"]["description"],
    }
    assert schemes["consoleSession"]["in"] == "cookie"
    paths = spec["paths"]
    assert paths["/v1/app"]["get"]["security"] == [{"appToken": []}, {"consoleSession": []}]
    assert paths["/v1/audio/transcriptions"]["post"]["security"] == [{"appToken": []}]
    assert "401" in paths["/v1/app"]["get"]["responses"]
    for path, method, media in (
        ("/v1/recognize", "post", "application/octet-stream"),
        ("/v1/transcriptions", "post", "multipart/form-data"),
        ("/v1/music/tags", "post", "audio/*"),
        ("/v1/sound/datasets/{dataset_id}/imports", "post", "application/zip"),
        ("/v1/sound/datasets/{dataset_id}/clips", "post", "application/octet-stream"),
        ("/v1/uploads/{upload_id}", "put", "application/octet-stream"),
        ("/v1/vocabulary", "put", "text/plain"),
    ):
        assert media in paths[path][method]["requestBody"]["content"], (method, path)
    form = paths["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]["multipart/form-data"][
        "schema"
    ]
    assert {"file", "model"} <= set(form["required"])
    assert form["properties"]["response_format"]["enum"][:5] == ["json", "text", "srt", "vtt", "verbose_json"]
    assert "timestamp_granularities[]" in form["properties"]
    ids = paths["/v1/sound/models/{model_id}"]["get"]["parameters"][0]["schema"]
    assert ids["maximum"] == MAX_ID and ids["minimum"] == 1


def test_inputs_that_were_500s_are_400s(server: Server, demo_app: dict[str, str]) -> None:
    auth = bearer(demo_app)
    huge = httpx.get(f"{server.url}/v1/sound/models/{2**64}", headers=auth)
    assert huge.status_code == 400 and huge.json()["error"]["code"] == "invalid_request"
    vocabulary = httpx.put(
        f"{server.url}/v1/vocabulary",
        headers={**auth, "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert vocabulary.status_code == 400 and "JSON" in vocabulary.json()["error"]["message"]
    sami = httpx.post(
        f"{server.url}/api/v1/invoke",
        json={
            "appkey": demo_app["api_key"],
            "token": demo_app["app_token"],
            "namespace": "MusicTagging",
            "payload": json.dumps(
                {
                    "task_flow": {"task": [{"task_type": "MusicTaggingGenre34"}]},
                    "audio_info": {"format": "pcm", "sample_rate": "abc"},
                }
            ),
            "data": "AAAA",
        },
    )
    assert sami.json()["status_code"] == 40000000 and "sample_rate" in sami.json()["status_text"]
    traced = httpx.request("TRACE", f"{server.url}/api/v1/auc/query")
    assert traced.status_code == 405 and "POST" in traced.headers["allow"]
    assert traced.json()["resp"]["code"] == 1099  # Volcano's body, HTTP's status
