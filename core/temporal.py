"""Temporal client construction (dev server, self-hosted cluster with TLS, or Temporal Cloud API key)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from core.settings import Settings


async def connect(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        api_key=settings.temporal_api_key,
        tls=bool(settings.temporal_tls or settings.temporal_api_key),
    )
