"""The service's API as an OpenAPI 3.1 document, served at ``GET /data/openapi.json``.

Written by hand, because the routes are one Werkzeug rule whose segments the
application reads itself (``/data[/<host>/<user>]/<store>[/<format>]``):
nothing could derive the four path shapes, the media types and the statuses
from it.  ``tests/test_openapi.py`` validates the document and checks the real
server against it with Schemathesis.
"""
from __future__ import annotations

import json
from typing import Any

__all__ = ["document", "document_bytes"]

_ERROR = {"description": "A one-line reason.",
          "content": {"text/plain": {"schema": {"type": "string"}}}}
_ETAG = {"description": "Strong entity tag of the store in the format served.",
         "schema": {"type": "string"}}
_LOCATION = {"description": "The store written, as /data/<host>/<user>/<store>.",
             "schema": {"type": "string"}}


def _errors(*codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for code in codes:
        out[str(code)] = dict(_ERROR)
    if "401" in out:
        out["401"] = {**_ERROR, "headers": {"WWW-Authenticate": {
            "description": 'Basic realm="<host>/data_access"', "schema": {"type": "string"}}}}
    return out


_SERVER_ERRORS = (500, 503, 507)
_READ_ERRORS = (401, 403, 404, 406, 412, 500, 503)
_WRITE_ERRORS = (400, 401, 403, 404, 412, 413, 428, *_SERVER_ERRORS)

_PRECONDITIONS = [
    {"name": "If-Match", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "Write only if the store is still what one of these tags names "
                    "(``*``: if it exists); else 412."},
    {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
     "description": "``*``: create only.  On GET, the current tag answers 304."},
]

_VALUE = {"type": ["object", "array"],
          "description": "A table as JSON (object or array), in Prosody's JSON conventions."}
_ITEM = {"not": {"enum": [None, False]},
         "description": "Any JSON value but null and false (which hold no data)."}
_LUA = {"type": "string", "description": "Prosody's serialization of the value (no return)."}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_ARCHIVE_QUERY = [
    _query("start", "Items at or after this time (XEP-0082 date-time or Unix seconds).",
           {"type": "string"}),
    _query("end", "Items at or before this time.", {"type": "string"}),
    _query("with", "Items exchanged with this JID (bare, or full: its bare part).",
           {"type": "string"}),
    _query("after", "The page after the item with this key.", {"type": "string"}),
    _query("before", "The page before the item with this key; empty: the last page.",
           {"type": "string"}),
    _query("max", "Items per page (default 100, at most 1000).",
           {"type": "string", "pattern": "^[0-9]{1,9}$"}),
    _query("at", "Position hint of a cursor (as the Link headers give it).",
           {"type": "string"}),
]
_PAGE_HEADERS = {
    "Link": {"description": 'RFC 8288 links to the rel="next" and rel="prev" pages.',
             "schema": {"type": "string"}},
    "Archive-First-Key": {"description": "Key of the page's first item (percent-encoded).",
                          "schema": {"type": "string"}},
    "Archive-Last-Key": {"description": "Key of the page's last item (percent-encoded).",
                         "schema": {"type": "string"}},
    "Archive-Count": {"description": "Items matching the filters, where cheap.",
                      "schema": {"type": "string"}},
}


def _read_operation(summary: str, queries: bool = False) -> dict[str, Any]:
    content = {"application/json": {"schema": _VALUE}, "text/x-lua": {"schema": _LUA}}
    headers: dict[str, Any] = {"ETag": _ETAG, **(_PAGE_HEADERS if queries else {})}
    parameters = [_PRECONDITIONS[1], {**_PRECONDITIONS[0], "description":
                                      "Answer 412 unless the store has one of these tags."}]
    return {
        "summary": summary + (" With any of start, end, with, after, before, max on a list "
                              "store: one page of an archive query." if queries else ""),
        "parameters": parameters + (_ARCHIVE_QUERY if queries else []),
        "responses": {
            "200": {"description": "The keyval data, else the list's items (or a page).",
                    "headers": headers, "content": content},
            "304": {"description": "The store still has the tag given in If-None-Match.",
                    "headers": {"ETag": _ETAG}},
            **_errors(*_READ_ERRORS, *((400,) if queries else ())),
        },
    }


def _head_operation() -> dict[str, Any]:
    return {
        "summary": "GET's headers (Content-Length, ETag) without the body.",
        "parameters": _PRECONDITIONS,
        "responses": {"200": {"description": "As GET.", "headers": {"ETag": _ETAG}},
                      "304": {"description": "As GET."},
                      **{str(c): {"description": "As GET."} for c in _READ_ERRORS}},
    }


def _write_operations() -> dict[str, Any]:
    body_types = {"application/json": {"schema": _VALUE},
                  "text/x-lua": {"schema": {"type": "string"}}}
    return {
        "put": {
            "summary": "Replace the keyval store (an empty table removes it).",
            "parameters": _PRECONDITIONS,
            "requestBody": {"required": True, "content": body_types},
            "responses": {"201": {"description": "Written.",
                                  "headers": {"Location": _LOCATION, "ETag": _ETAG}},
                          **_errors(*_WRITE_ERRORS)},
        },
        "post": {
            "summary": "Append one item to the list store.",
            "parameters": _PRECONDITIONS,
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ITEM},
                "text/x-lua": {"schema": {"type": "string"}}}},
            "responses": {"201": {"description": "Appended.",
                                  "headers": {"Location": _LOCATION}},
                          **_errors(*_WRITE_ERRORS)},
        },
        "patch": {
            "summary": "Apply a JSON merge patch (RFC 7396) to the keyval store.",
            "parameters": _PRECONDITIONS,
            "requestBody": {"required": True, "content": {
                "application/merge-patch+json": {"schema": {"type": "object"}}}},
            "responses": {"204": {"description": "Patched.", "headers": {"ETag": _ETAG}},
                          **_errors(409, 415, *_WRITE_ERRORS)},
        },
        "delete": {
            "summary": "Remove the store (keyval and list).",
            "parameters": _PRECONDITIONS,
            "responses": {"204": {"description": "Removed (or there was nothing)."},
                          **_errors(401, 403, 404, 412, 428, *_SERVER_ERRORS)},
        },
    }


_STORE = {"name": "store", "in": "path", "required": True, "example": "roster",
          "schema": {"type": "string", "pattern": "^[A-Za-z_]+$"}}
_FORMAT = {"name": "format", "in": "path", "required": True, "example": "json",
           "schema": {"type": "string", "enum": ["json", "lua"]}}
_HOST = {"name": "host", "in": "path", "required": True, "example": "localhost",
         "schema": {"type": "string"}}
_USER = {"name": "user", "in": "path", "required": True, "example": "alice",
         "schema": {"type": "string"}}


def _format_writes() -> dict[str, Any]:
    """A format in the path is for reading: every write there is 404."""
    refused = {"summary": "Not a write target: a format is only meaningful for GET.",
               "responses": _errors(401, 403, 404)}
    return {method: refused for method in ("put", "post", "patch", "delete")}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service."""
    own = {"parameters": [_STORE], "get": _read_operation("The requester's own store.", True),
           "head": _head_operation(), **_write_operations()}
    own_format = {"parameters": [_STORE, _FORMAT],
                  "get": _read_operation("The requester's own store, in a format."),
                  "head": _head_operation(), **_format_writes()}
    other = {"parameters": [_HOST, _USER, _STORE],
             "get": _read_operation("A user's store (rights: README 'Who may do what').", True),
             "head": _head_operation(), **_write_operations()}
    other_format = {"parameters": [_HOST, _USER, _STORE, _FORMAT],
                    "get": _read_operation("A user's store, in a format."),
                    "head": _head_operation(), **_format_writes()}
    return {
        "openapi": "3.1.0",
        "info": {"title": "prosody-store data access", "version": "1",
                 "description": "Prosody's mod_data_access API over a Prosody data "
                                "directory, with ETags, preconditions and merge patches."},
        "components": {"securitySchemes": {"basic": {
            "type": "http", "scheme": "basic",
            "description": "user@host and the account's password"}}},
        "security": [{"basic": []}],
        "paths": {
            "/data/{store}": own,
            "/data/{store}/{format}": own_format,
            "/data/{host}/{user}/{store}": other,
            "/data/{host}/{user}/{store}/{format}": other_format,
            "/health": {"get": {
                "summary": "Whether the data directory can be read (no data, no auth).",
                "security": [],
                "responses": {"200": {"description": "ok", "content": {
                    "text/plain": {"schema": {"type": "string"}}}},
                    "503": _ERROR}}},
            "/data/openapi.json": {"get": {
                "summary": "This document.", "security": [],
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {
                    "application/json": {"schema": {"type": "object"}}}}}}},
        },
    }


def document_bytes() -> bytes:
    """:func:`document` as JSON text."""
    return json.dumps(document(), indent=1, sort_keys=True).encode("utf-8")
