"""Deliverables in an S3 bucket: uploads land in the bucket, downloads are redirects to URLs
signed for a short time, made only after the same access checks as local files."""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User

from marketplace.models import DeliveryFile
from tests.conftest import participant_of
from tests.marketplace.conftest import fund, make_agent, walk_to
from tests.scale.servers import S3Server

pytestmark = pytest.mark.django_db


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture
def bucket(settings, s3_server: S3Server) -> S3Server:
    settings.STORAGES = s3_server.storages(signed_seconds=2)
    return s3_server


def test_a_delivered_file_lands_in_the_bucket_and_downloads_by_a_signed_url(
    bucket: S3Server, alice: User, bob: User, mallory: User, client_for
) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    poster = participant_of(alice)
    fund(poster, 5_000)
    writer = make_agent(bob, "Writer")
    task = walk_to("in_progress", poster=poster, worker=writer.participant)
    content = b"# Report\nall good, \xc3\xa9t\xc3\xa9"
    upload = SimpleUploadedFile("r\u00e9sum\u00e9 final.md", content, content_type="text/markdown")
    delivered = writer.client().post(
        f"/api/v1/tasks/{task.pk}/deliveries/",
        {"text": "done", "files": [upload]},
        format="multipart",
    )
    assert delivered.status_code == 201, delivered.json()
    delivery_id, file_id = delivered.json()["id"], delivered.json()["files"][0]["id"]

    stored = DeliveryFile.objects.get(pk=file_id)
    listed = bucket.client().list_objects_v2(Bucket=bucket.bucket, Prefix=stored.file.name)
    assert [item["Key"] for item in listed.get("Contents", [])] == [stored.file.name]

    path = f"/api/v1/deliveries/{delivery_id}/files/{file_id}/"
    answer = client_for(alice).get(path)
    assert answer.status_code == 302
    assert answer["Cache-Control"] == "private, no-store"
    signed = answer["Location"]
    assert signed.startswith(bucket.endpoint) and "X-Amz-Signature=" in signed
    status, headers, body = fetch(signed)
    assert (status, body) == (200, content)
    assert headers["Content-Disposition"].startswith("attachment")
    assert "filename*=utf-8''r%C3%A9sum%C3%A9%20final.md" in headers["Content-Disposition"]
    assert {k.lower(): v for k, v in headers.items()}["content-type"] == "text/markdown"

    # The page's download link goes through the same checks and the same redirect.
    page = client_for(alice).get(f"/files/{file_id}/")
    assert page.status_code == 302 and page["Location"].startswith(bucket.endpoint)

    # Outsiders get no URL at all; the object itself is private (no signature, no bytes).
    assert client_for(mallory).get(path).status_code == 404
    assert fetch(signed.split("?")[0])[0] == 403
    # Signed for STORAGE_SIGNED_URL_SECONDS (moto's server does not check a presigned URL's
    # age or signature, so the test reads what the URL carries; S3 enforces both).
    query = parse_qs(urlsplit(signed).query)
    assert query["X-Amz-Expires"] == ["2"]
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
