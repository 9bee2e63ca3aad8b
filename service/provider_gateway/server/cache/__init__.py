"""The exact-match answer cache ([cache], off by default; docs/caching.md).

A gRPC interceptor between the edge and `[auth]`: a caller's identical Chat, ChatStream, Complete or
CompleteStream request is answered from this process's memory, with no upstream call, no router
slot and no charge against the key's quotas. It works on the wire messages (it sits at the server's
level: it imports server/auth.py and the protobuf code), so it knows nothing of providers.
"""

from provider_gateway.server.cache.interceptor import CacheInterceptor, from_config

__all__ = ["CacheInterceptor", "from_config"]
