"""Named errors a user can act on; the API layer maps each to an OpenAI error type."""


class HearthError(Exception):
    """Base of every error the engine raises on purpose."""


class ModelFileError(HearthError):
    """The model file is missing, unreadable, truncated or not GGUF."""


class UnsupportedModel(HearthError):
    """The GGUF describes an architecture, tensor type or tokenizer this engine does not run."""


class NoChatTemplate(HearthError):
    """The model carries no chat template, so chat messages cannot be turned into a prompt."""


class ContextTooLong(HearthError):
    """The prompt (plus what must be generated) does not fit in the model's context."""


class InvalidRequest(HearthError):
    """A request's parameters are out of range or inconsistent."""
