"""Pydantic v2 mirrors of ``Channel``, ``Session`` and ``Page``: the models the usual httpx + pydantic client has."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

__all__ = ["ChannelModel", "EventModel", "PageModel", "SessionModel", "SessionPageModel"]

T = TypeVar("T")


class _Camel(BaseModel):
    # The same contract as the msgspec structs: snake_case attributes, camelCase keys, unknown keys ignored.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class S3DestinationModel(_Camel):
    access_key: str
    bucket: str
    endpoint: str
    secret_key: str
    region: str
    segment_prefix: str | None = None


class CatchupDestinationModel(_Camel):
    type: str = "s3"
    s3: S3DestinationModel | None = None


class MachineModel(_Camel):
    enabled: bool = True
    machine_id: str | None = None
    machine_type: str | None = None


class ChannelInputModel(_Camel):
    stream_token: str | None = None
    rtmp_server: str | None = None


class ChannelModel(_Camel):
    id: str
    name: str = ""
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    app_id: str | None = None
    input_id: str | None = None
    transcode_profile: list[Any] = Field(default_factory=list)
    type: str | None = None
    mode: str | None = None
    stop_timeout: int | None = None
    catchup: bool | None = None
    destination_catchup: CatchupDestinationModel | None = None
    record: bool | None = None
    output_format: str | None = None
    status: str | None = None
    machine: MachineModel | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    current_session_id: str | None = None
    input: ChannelInputModel = Field(default_factory=ChannelInputModel)
    live_stream_url: str | None = None


class ClientInfoModel(BaseModel):
    # The wire's own mixed keys, as in ``sigma_async.models.ClientInfo``.
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    action: str | None = None
    stream: str | None = None
    ip: str | None = None
    client_id: str | None = None
    param: str | None = None
    tc_url: str | None = Field(default=None, alias="tcUrl")
    ips: list[str] = Field(default_factory=list)
    app: str | None = None
    stream_id: str | None = None


class EventModel(_Camel):
    id: str
    action: str
    created_at: datetime
    session_id: str | None = None
    actor: str | None = None
    message: str | None = None
    updated_at: datetime | None = None


class SessionModel(_Camel):
    id: str = ""
    name: str = ""
    status: str | None = None
    app_id: str | None = None
    record_urls: list[str] = Field(default_factory=list)
    client_info: ClientInfoModel | None = None
    duration: float | None = None
    is_create_task: bool | None = None
    channel_id: str | None = None
    channel: ChannelModel | None = None
    events: list[EventModel] = Field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None


class PageModel(_Camel, Generic[T]):
    data: list[T] = Field(default_factory=list)
    total: int | None = None
    count: int | None = None
    page: int | None = None
    per_page: int | None = None


SessionPageModel = PageModel[SessionModel]
