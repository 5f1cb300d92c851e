"""Benchmarks of sigma-async against raw aiohttp + msgspec and httpx + pydantic: ``python -m benchmarks``."""
