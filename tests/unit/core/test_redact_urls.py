"""Rule 2 for query strings (masked in text) and ``public_url`` (credentials dropped, for ids)."""

import pytest

from runner.core import redact


@pytest.mark.parametrize("raw, shown", [
    ("http://h:1/v1?token=abc&model=x", "http://h:1/v1?token=***&model=x"),
    ("GET http://h/x?a=1&api_key=zz#f failed", "GET http://h/x?a=1&api_key=***#f failed"),
    ("https://b.s3/o?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff&X-Amz-Expires=60",
     "https://b.s3/o?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60"),
    ("http://h/?max_tokens=5&keys=3&monkey=1", "http://h/?max_tokens=5&keys=3&monkey=1"),
    ("http://u:p@h/?sig=s1", "http://u:***@h/?sig=***"),
])
def test_query_secrets_masked(raw, shown):
    assert redact.url(raw) == shown
    assert redact.text(raw) == shown


@pytest.mark.parametrize("raw, public", [
    ("http://user:secret@host:8000/v1", "http://host:8000/v1"),
    ("http://tok@h/?a=1&api_key=zz#f", "http://h/?a=1#f"),
    ("http://h:1/v1?token=abc&model=x", "http://h:1/v1?model=x"),
    ("http://h:1/v1?token=abc", "http://h:1/v1"),
    ("http://h:1/v1/?b=2&a=1", "http://h:1/v1/?b=2&a=1"),      # no credential: byte for byte
    ("http://h:1", "http://h:1"),
])
def test_public_url_drops_credentials_only(raw, public):
    assert redact.public_url(raw) == public
