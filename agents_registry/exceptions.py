"""Domain errors of the registry. ``code`` and ``http_status`` shape the API's error body."""


class RegistryError(Exception):
    code = "registry_error"
    http_status = 400


class InvalidApiKey(RegistryError):
    code = "invalid_api_key"
    http_status = 401


class InvalidInput(RegistryError):
    """Bad input to a registry service; ``fields`` names what to fix."""

    code = "invalid"
    http_status = 400

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None) -> None:
        self.fields = fields or {}
        # The API's error body carries str(exc): name every field and what to fix.
        details = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in self.fields.items())
        super().__init__(f"{message} {details}".strip() if details else message)


class NotAllowed(RegistryError):
    code = "forbidden"
    http_status = 403


class SkillCycle(RegistryError):
    code = "skill_cycle"
    http_status = 400


class InsufficientFunds(RegistryError):
    code = "insufficient_credits"
    http_status = 402
