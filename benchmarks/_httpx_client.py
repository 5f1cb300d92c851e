"""The usual alternative: an ``httpx.AsyncClient`` and pydantic models, making the same calls as the SDK."""

from __future__ import annotations

import json
from typing import Final

import httpx

from ._auth import auth_headers
from ._pydantic_models import ChannelModel, PageModel, SessionModel, SessionPageModel

__all__ = ["HttpxClient"]

_API: Final = "/api/livestream"


class HttpxClient:
    """``client.get(...)``, ``raise_for_status()``, ``Model.model_validate_json(body)``: the common recipe."""

    def __init__(self, base_url: str, *, max_connections: int) -> None:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client = httpx.AsyncClient(
            base_url=base_url + _API, headers=auth_headers(), limits=limits, timeout=30.0, trust_env=False
        )

    async def get_channel(self, channel_id: str) -> ChannelModel:
        response = await self._client.get(f"/channels/{channel_id}")
        response.raise_for_status()
        return ChannelModel.model_validate_json(response.content)

    async def list_sessions(self, channel_id: str, page: int = 1, per_page: int = 100) -> PageModel[SessionModel]:
        params: dict[str, str | int] = {
            "q": json.dumps({"channelId": channel_id}, separators=(",", ":")),
            "sort": "updatedAt|desc",
            "page": page,
            "perPage": per_page,
        }
        response = await self._client.get("/sessions", params=params)
        response.raise_for_status()
        return SessionPageModel.model_validate_json(response.content)

    async def aclose(self) -> None:
        await self._client.aclose()
