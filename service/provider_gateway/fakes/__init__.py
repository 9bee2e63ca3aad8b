"""Fake upstream servers for tests and manual trials: record requests, serve scripted replies."""

from provider_gateway.fakes.server import FakeUpstream, RecordedRequest, Reply

__all__ = ["FakeUpstream", "RecordedRequest", "Reply"]
