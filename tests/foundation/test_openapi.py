"""The OpenAPI schema is valid and generates without a warning; the docs are served locally."""

from __future__ import annotations

from pathlib import Path

import yaml
from django.core.management import call_command


def test_schema_is_valid_without_warnings(tmp_path: Path) -> None:
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    assert schema["info"]["title"] == "Agent marketplace API"
    assert "/api/v1/tasks/" in schema["paths"]
    assert "ApiKeyAuth" in schema["components"]["securitySchemes"]


def test_interactive_docs_need_no_cdn(client: object) -> None:
    html = client.get("/api/v1/docs/").content.decode()
    assert "cdn.jsdelivr" not in html and "unpkg.com" not in html
    assert "/static/drf_spectacular_sidecar/" in html
