"""Every error that crosses Hearth's message protocol, named once (JavaScript gets the same names).

Each carries the HTTP status and code the OpenAI API reports it with (bridge/api.py maps the status to
OpenAI's error type). The CLI and the bridge print any of them as one line and exit with status 2.
"""


class HearthError(Exception):
    """Base of every error the engine raises on purpose."""

    status = 500
    code = "internal_error"


class ModelFileError(HearthError):
    """The model file is missing, unreadable, truncated or not GGUF."""

    code = "model_file_error"


class UnsupportedModel(HearthError):
    """The GGUF describes an architecture, tensor type or tokenizer this engine does not run."""

    code = "unsupported_model"


class NoChatTemplate(HearthError):
    """The model carries no chat template, so chat messages cannot be turned into a prompt."""

    status, code = 400, "no_chat_template"


class ContextTooLong(HearthError):
    """The prompt (plus what must be generated) does not fit in the model's context."""

    status, code = 400, "context_length_exceeded"


class InvalidRequest(HearthError):
    """A request's parameters are out of range or inconsistent, or a message is malformed."""

    status, code = 400, "invalid_request"


class GpuUnavailable(HearthError):
    """No WebGPU adapter could be opened."""

    status, code = 503, "gpu_unavailable"


class LoadError(HearthError):
    """The model failed to load (the cause is in the message); requests fail with it until a reload."""

    status, code = 503, "model_not_loaded"


class ExtensionError(HearthError):
    """The extension's own plumbing failed: the service worker could not reach the engine's document."""

    code = "extension_error"


class InternalError(HearthError):
    """A bug: an exception nobody raised on purpose, reported with its Python type instead of a traceback."""


# The names that cross the protocol, in the order the docs list them; JavaScript imports this list.
ERRORS: dict[str, type[HearthError]] = {
    cls.__name__: cls
    for cls in (ModelFileError, UnsupportedModel, NoChatTemplate, ContextTooLong, InvalidRequest, GpuUnavailable,
                LoadError, ExtensionError, InternalError)
}  # fmt: skip


def named(error: BaseException) -> HearthError:
    """`error` itself when it is one of ours, else an InternalError that names its Python type."""
    if isinstance(error, HearthError):
        return error
    return InternalError(f"{type(error).__name__}: {error}")
