"""``GET /metrics``: Prometheus text format for the server, its workers and the job tables (see
``tingyin.metrics``). Counts and timings only, no names or contents: like /healthz it needs no token, so a
Prometheus on the operator's network can scrape it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tingyin.api.deps import in_thread
from tingyin.metrics import StateCollector, process_metrics, read_state_counts

router = APIRouter(tags=["system"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "Prometheus"}},
)
async def metrics(request: Request) -> Response:
    """Requests by API dialect, route and status; request durations; audio seconds by model and API; jobs
    by kind and state and the queue depth; jobs finished by workers; models loaded; training runs."""
    collector = StateCollector(getattr(request.app.state, "inference", None), read_state_counts)
    body, content_type = await in_thread(process_metrics().exposition, [collector])
    return Response(body, media_type=content_type)
