"""The bridge: local programs use the model in the browser extension (or the native engine), OpenAI-style.

`python -m bridge` serves; `bridge.Client` / `bridge.AsyncClient` talk to it (see bridge/client.py).
"""

from .client import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)

__all__ = [
    "APIConnectionError", "APIError", "APITimeoutError", "AsyncClient", "AuthenticationError", "BadRequestError",
    "Client", "InternalServerError", "NotFoundError", "PermissionDeniedError", "RateLimitError",
]  # fmt: skip
