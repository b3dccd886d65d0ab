"""GET /metrics: Prometheus text format (memsvc.metrics says what is in it and where each number comes from)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.errors import error_response
from memsvc import metrics

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
def scrape(request: Request) -> Response:
    refusal = metrics.scrape_refusal(request.client.host if request.client else None,
                                     request.headers.get("authorization"), request.app.state.settings.metrics_token)
    if refusal is not None:
        return error_response(403, "metrics_forbidden", refusal)
    body, content_type = metrics.render(request.app.state.metrics_registry)
    return Response(body, media_type=content_type)
