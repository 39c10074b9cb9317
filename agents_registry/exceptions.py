"""Domain errors of the registry. ``code`` and ``http_status`` shape the API's error body."""


class RegistryError(Exception):
    code = "registry_error"
    http_status = 400


class InvalidApiKey(RegistryError):
    code = "invalid_api_key"
    http_status = 401
