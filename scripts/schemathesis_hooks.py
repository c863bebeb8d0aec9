"""schemathesis hooks for scripts/schemathesis.sh (loaded through SCHEMATHESIS_HOOKS).

Negative data generation puts control characters (NUL, ESC, DEL, ...) into header values and
characters outside RFC 9110's `tchar` into header names. Such a request is not valid HTTP/1.1:
actix-web's HTTP codec refuses it with a bare `400 Bad Request` (no body, no content type)
before any careflow code runs, so its answer can never match the document. These cases are
left out; every other header value, valid or not by the document, is still sent. What the
codec does with them is recorded in docs/http-api.md "Errors" and docs/reliability.md.
"""

import schemathesis

TCHAR = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _field_name(name):
    return bool(name) and all(ch in TCHAR for ch in name)


def _field_value(value):
    return all(ch == "\t" or (ch >= " " and ch != "\x7f") for ch in str(value))


@schemathesis.hook
def filter_headers(context, headers):
    return headers is None or all(
        _field_name(name) and _field_value(value) for name, value in headers.items()
    )
