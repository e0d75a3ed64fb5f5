"""The HTTP data access service: Prosody's ``mod_data_access`` API over :mod:`prosody_store`.

::

    GET | HEAD       /data[/<host>/<user>]/<store>[/<format>]
    PUT | POST       /data[/<host>/<user>]/<store>
    PATCH            /data[/<host>/<user>]/<store>   (JSON merge patch)
    DELETE           /data[/<host>/<user>]/<store>
    GET | HEAD       /health   (no authentication: 200 or 503, no data)

This module only maps HTTP to store calls: every request takes one path
(:meth:`DataAccessApp.dispatch`: the route by splitting the path, the limits,
the login, the rights, the method), Werkzeug parses what a plain read does
not need (``Accept`` beyond ``*/*``, preconditions, bodies, queries),
:mod:`wsgi_app.auth` says who is asking, :mod:`wsgi_app.rights` what they may
do, :mod:`wsgi_app.edits` makes ETags, evaluates preconditions and
merges patches, :mod:`prosody_store` does the data work.  Every error is an
``HTTPException`` with a one-line plain-text reason, and nothing is written
before a request has been fully validated.  Every write checks its
preconditions and computes the store's new ETag under the store's lock
(:meth:`DataManager.lock`), so no other writer of ours comes between.
"""
from __future__ import annotations

import errno
import functools
import logging
import os
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, cast
from urllib.parse import quote, urlencode

from werkzeug.datastructures import Authorization, WWWAuthenticate
from werkzeug.exceptions import (
    BadRequest,
    Conflict,
    Forbidden,
    HTTPException,
    InternalServerError,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    RequestEntityTooLarge,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from werkzeug.http import quote_etag
from werkzeug.wrappers import Request, Response

from prosody_store.formats import FORMATS, Format, by_media_type
from prosody_store import archive_query, serialization
from prosody_store.datamanager import (
    CorruptFileError,
    DataManager,
    InvalidNameError,
    ListBusyError,
    NameTooLongError,
    StoreError,
)
from prosody_store.jid import JIDError, nodeprep
from wsgi_app import edits, limits, openapi
from wsgi_app.auth import Authenticator, AuthError, User, prep_host
from wsgi_app.cache import BodyCache
from wsgi_app.edits import Failed, Preconditions, Served, StoreState
from wsgi_app.in_loop import IN_LOOP_KEY, AnswerLater
from wsgi_app.observe import USER_KEY
from wsgi_app.rights import READ_METHODS, WRITE_METHODS, Access, Rights, permits, public_view

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("wsgi_app")
auth_log = logging.getLogger("wsgi_app.auth")

DEFAULT_MAX_BODY = 10 * 1024 * 1024
GUARDED_METHODS = ("PUT", "PATCH", "DELETE")
"""The writes that replace or remove what is there, which ``require_precondition``
refuses (428) without ``If-Match`` or ``If-None-Match``; POST only appends."""

MEDIA_TYPES = [f.media_type for f in FORMATS.values()]
STORE_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")


Answer = tuple[str, "Iterable[tuple[str, str]]", bytes]
"""A response of the lean path: status line, headers, body (the whole of it)."""

DEFAULT_FORMAT = next(iter(FORMATS.values()))
"""What a request without a format or ``Accept`` gets."""
DATA_PATH = "/data"
HEALTH_PATH = "/health"
OPENAPI_PATH = "/data/openapi.json"
UNAUTHENTICATED_PATHS = (HEALTH_PATH, OPENAPI_PATH)
"""Paths answered without credentials (with 405 for a method they do not have)."""
API_METHODS = (*READ_METHODS, *WRITE_METHODS)
BODY_METHODS = ("PUT", "POST", "PATCH")


class DataAccessApp:
    """The WSGI application.  See :func:`wsgi_app.create_app` for the options.

    Every request takes one path (:meth:`dispatch`): the route from splitting
    the path (three paths, so no router), the credentials from the login
    cache (:meth:`Authenticator.cached_login`: a digest, a dictionary lookup,
    a ``stat``) or a full login, the rights from :class:`Rights`, then the
    method.  A GET or HEAD of a keyval store without preconditions is
    answered from :class:`BodyCache`, whose entries hold the body and its
    headers (ETag included) while the file is unchanged; everything else
    (conditional requests, content negotiation, lists, writes, errors) is
    parsed by Werkzeug's ``Request`` and answered by its ``Response``.
    """

    wsgi_app: WSGIApplication
    """What :meth:`__call__` calls: :meth:`handle`, wrapped in middleware by
    :func:`wsgi_app.create_app` (``app.wsgi_app = Middleware(app.wsgi_app)``)."""

    def __init__(self, dm: DataManager, auth: Authenticator, rights: Rights, *,
                 max_body: int = DEFAULT_MAX_BODY, max_values: int = limits.DEFAULT_MAX_VALUES,
                 max_depth: int = serialization.DEFAULT_MAX_DEPTH,
                 require_precondition: bool = False) -> None:
        self.dm = dm
        self.auth = auth
        self.rights = rights
        self.max_body = max_body
        self.max_values = max_values
        self.max_depth = max_depth
        self.require_precondition = require_precondition
        """True: PUT, PATCH and DELETE without If-Match or If-None-Match get 428."""
        self.bodies = BodyCache()
        # The path of a store's .dat, computed once per (user, host, store): the
        # names are prepared already, so this is pure (and bounded).
        self.store_path = functools.lru_cache(maxsize=4096)(self._store_path)
        self.wsgi_app = self.handle

    # -- WSGI ----------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        # Middleware (the access log, metrics, trusted proxies: wsgi_app.create_app)
        # wraps wsgi_app, so that the application object stays this one.
        return self.wsgi_app(environ, start_response)

    def handle(self, environ: WSGIEnvironment,
               start_response: StartResponse) -> Iterable[bytes]:
        # AnswerLater (a request offered in the server's loop that needs a worker,
        # wsgi_app.in_loop) is a BaseException: it passes through untouched.
        try:
            answer = self.dispatch(environ)
        except HTTPException as exc:
            answer = error_response(exc)
        except Exception:  # a bug: the details to the log, one line to the client
            log.exception("internal error on %s %s", environ.get("REQUEST_METHOD"),
                          _decoded(environ.get("SCRIPT_NAME", "")
                                   + environ.get("PATH_INFO", "")))
            answer = error_response(InternalServerError("internal server error"))
        if IN_LOOP_KEY in environ and USER_KEY in environ:
            self.auth.count_cached_login()  # answered in the loop: its login counts now
        if isinstance(answer, Response):
            return answer(environ, start_response)
        status, headers, body = answer
        start_response(status, list(headers))
        return [body]

    def dispatch(self, environ: WSGIEnvironment) -> Response | Answer:
        """The one path of every request: route, limits, credentials, rights, method.

        A request offered in the server's event loop (``environ[IN_LOOP_KEY]``)
        takes it too, up to the first step that memory cannot answer (a write,
        the health check, a login not in the cache, someone else's data, a body
        not in the cache): there it raises :class:`AnswerLater`, having changed
        nothing."""
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "")
        if IN_LOOP_KEY in environ and method not in READ_METHODS:
            raise AnswerLater
        # /health and /data/openapi.json, with or without a trailing slash.
        fixed = path[:-1] if path.endswith("/") and path[:-1] in UNAUTHENTICATED_PATHS else path
        if fixed in UNAUTHENTICATED_PATHS and method in READ_METHODS:
            if fixed == HEALTH_PATH:
                if IN_LOOP_KEY in environ:
                    raise AnswerLater  # it lists the data directory
                return self.health()
            # The API's description: no auth, no data.
            return Response(openapi.document_bytes(), status=200,
                            content_type="application/json; charset=utf-8")
        if fixed == HEALTH_PATH:
            raise MethodNotAllowed(list(READ_METHODS), description=f"method {method} not allowed")
        if path != DATA_PATH and not path.startswith("/data/"):
            raise NotFound("no such path: the API is /data[/<host>/<user>]/<store>")
        if method not in API_METHODS:
            if fixed != OPENAPI_PATH:
                self.authenticate(environ)  # without valid credentials, nothing but 401
            raise MethodNotAllowed(list(API_METHODS), description=f"method {method} not allowed")
        if method in BODY_METHODS:
            self.check_length(environ)  # before the credentials: waitress does so too
        user = self.authenticate(environ)
        host, node, store, fmt = self.resolve(_decoded(path[len(DATA_PATH):]), user)
        if IN_LOOP_KEY in environ and (node, host) != (user.node, user.host):
            raise AnswerLater  # someone else's data: the rights may read role stores
        try:
            access = self.rights.access(user.node, user.host, node, host, store)
            if not permits(access, method):
                verb = "read" if method in READ_METHODS else "change"
                raise Forbidden(f"{user.jid} may not {verb} store {store!r} of {node}@{host}")
            if method in READ_METHODS:
                return self.read(environ, host, node, store, fmt, access)
            request = Request(environ)
            if fmt is not None:
                raise NotFound("a format is only meaningful for GET")
            preconditions = preconditions_of(request)
            if preconditions is None and self.require_precondition and method in GUARDED_METHODS:
                raise PreconditionRequired(f"{method} needs If-Match (or If-None-Match: * to "
                                           "create) on this server")
            if method == "DELETE":
                return self.delete(request, host, node, store, access, preconditions)
            if method == "PATCH":
                return self.patch(request, host, node, store, access, preconditions)
            return self.put_or_post(request, host, node, store, access, preconditions)
        except (StoreError, OSError) as err:
            raise storage_failure(err, store, f"{node}@{host}") from None

    def check_length(self, environ: WSGIEnvironment) -> None:
        """413 for a declared ``Content-Length`` over ``max_body``, before anything
        else looks at the request.  (waitress refuses such a body itself, while
        reading it; under granian this is where it is refused.  A body without
        a length is read to ``max_body`` + 1 bytes at most, after the login.)"""
        length = environ.get("CONTENT_LENGTH")
        if length and length.isdigit() and int(length) > self.max_body:
            raise RequestEntityTooLarge(f"body larger than {self.max_body} bytes")

    # -- who and what --------------------------------------------------------------

    def authenticate(self, environ: WSGIEnvironment) -> User:
        """The user of the request's credentials, or 401.

        A header value that logged in before answers from the login cache;
        any other goes to :meth:`Authenticator.authenticate` (which costs
        every failure the same)."""
        header = environ.get("HTTP_AUTHORIZATION")
        in_loop = IN_LOOP_KEY in environ
        # In the loop, the hit is counted once the request is answered there (handle).
        user = None if header is None else self.auth.cached_login(header, count=not in_loop)
        if user is None:
            if in_loop:
                raise AnswerLater  # a login costs a key derivation, a refusal as much
            user = self.login(environ, header)
        environ[USER_KEY] = user.jid
        return user

    def login(self, environ: WSGIEnvironment, header: str | None) -> User:
        try:
            credentials = Authorization.from_header(header)
        except ValueError:  # Werkzeug's base64 decoding of non-ASCII ("Basic \x80")
            credentials = None
        request = Request(environ)
        if credentials is None or credentials.type != "basic":
            raise self.unauthorized(request, credentials, "HTTP Basic credentials required")
        try:
            return self.auth.authenticate(credentials.username or "",
                                          credentials.password or "", header)
        except AuthError as err:
            # The reason stays here (and in the log): telling "no such account" from
            # "wrong password" would let anyone probe which accounts exist.
            name = credentials.username or ""
            auth_log.warning("failed login as %r from %s: %s",
                             name if len(name) <= 200 else name[:200] + "...",
                             request.remote_addr or "-", limits.brief(err))
            raise self.unauthorized(request, credentials, "bad credentials") from None

    def unauthorized(self, request: Request, credentials: Authorization | None,
                     reason: str) -> Unauthorized:
        realm = f"{self.realm_host(request, credentials)}/data_access"
        return Unauthorized(f"authentication failed: {reason}",
                            www_authenticate=WWWAuthenticate("basic", {"realm": realm}))

    def realm_host(self, request: Request, credentials: Authorization | None) -> str:
        """The host named in the credentials if it is served here, else the HTTP host."""
        if credentials is not None and credentials.type == "basic" and credentials.username:
            host = credentials.username.rpartition("@")[2].partition("/")[0]
            try:
                if host and self.auth.serves(prep_host(host)):
                    return prep_host(host)
            except JIDError:
                pass
        # request.host is "" when the Host header is missing or malformed.
        host = request.host
        host = host[1:].partition("]")[0] if host.startswith("[") else host.partition(":")[0]
        return host or "localhost"

    def _store_path(self, node: str, host: str, store: str) -> str:
        return self.dm.getpath(node, host, store)

    def resolve(self, path: str, user: User) -> tuple[str, str, str, str | None]:
        """Host, user, store and format from the path, as mod_data_access splits it."""
        segments = [s for s in path.split("/") if s]
        own = len(segments) < 3
        if own:
            segments[0:0] = [user.host, user.node]
        if len(segments) > 4:
            raise NotFound("too many path segments")
        # Segments are not empty: the store is missing exactly when there are fewer than 3.
        if len(segments) < 3 or not set(segments[2]) <= STORE_NAME_CHARS:
            raise NotFound("store names are letters and underscores")
        host, node, store = segments[:3]
        fmt = segments[3] if len(segments) > 3 else None
        if not own:  # the user's own host and node are prepared already
            try:
                host = _prep_host(host)
                node = _nodeprep(node)
                if not node:
                    raise JIDError("empty user name")
                self.dm.getpath(node, host, store)  # names that no file can have
            except (JIDError, InvalidNameError, NameTooLongError):
                raise NotFound("no such user or host") from None
        if fmt is not None and fmt not in FORMATS:
            raise NotFound(f"unknown format {fmt!r} ({' or '.join(FORMATS)})")
        return host, node, store, fmt

    # -- methods -------------------------------------------------------------------

    def health(self) -> Response:
        """200 when the data directory can be listed, else 503; never a name or path."""
        try:
            with os.scandir(self.dm.data_path) as entries:
                next(entries, None)
        except OSError as err:
            log.error("health check: data directory %s unreadable: %s", self.dm.data_path, err)
            raise ServiceUnavailable("data directory unreadable") from None
        return Response("ok\n", status=200, content_type="text/plain; charset=utf-8")

    def read(self, environ: WSGIEnvironment, host: str, node: str, store: str,
             name: str | None, access: Access) -> Response | Answer:
        """GET and HEAD: a keyval store's value, else the list's items (or an
        archive page); a plain request for a keyval store from :attr:`bodies`."""
        fmt = FORMATS[name] if name is not None else self.negotiate(environ)
        in_loop = IN_LOOP_KEY in environ
        if not access.secrets:
            if in_loop:
                raise AnswerLater
            return self.read_public(Request(environ), host, node, store, fmt)

        def encoded_keyval() -> bytes | None:
            if in_loop:
                raise AnswerLater  # the body is not in the cache: a file to read
            data = self.dm.load(node, host, store)
            return None if data is None else fmt.encode(data)

        found = self.bodies.entry(self.store_path(node, host, store), fmt.name, encoded_keyval,
                                  functools.partial(keyval_headers, fmt))
        if found is not None:
            body, headers = found
            if "HTTP_IF_MATCH" not in environ and "HTTP_IF_NONE_MATCH" not in environ:
                return "200 OK", headers, b"" if environ["REQUEST_METHOD"] == "HEAD" else body
            return self.respond(fmt, body, edits.keyval_tag(fmt.name, body),
                                preconditions_of(Request(environ)), store)
        return self.read_list(Request(environ), host, node, store, fmt)

    def read_public(self, request: Request, host: str, node: str, store: str,
                    fmt: Format) -> Response:
        """The public view of a protected store (:func:`public_view`)."""
        value = public_view(store, self.dm.load(node, host, store))
        if value is None:
            raise NotFound(f"no data in store {store!r}")
        shown = fmt.encode(value)
        return self.respond(fmt, shown, edits.keyval_tag(fmt.name, shown),
                            preconditions_of(request), store)

    def read_list(self, request: Request, host: str, node: str, store: str,
                  fmt: Format) -> Response:
        """A list store: all its items, or one page of an archive query."""
        preconditions = preconditions_of(request)
        if not QUERY_PARAMETERS.isdisjoint(request.args.keys()):
            return self.archive_page(request, host, node, store, fmt)
        items, tag = edits.open_list(self.dm, node, host, store, fmt.name)
        if tag is None:  # no list, or an empty one
            items.close()
            raise NotFound(f"no data in store {store!r}")
        try:
            not_modified = self.check_read(preconditions, fmt, tag, store)
        except HTTPException:
            items.close()
            raise
        if not_modified is not None:
            items.close()
            return not_modified
        if request.method == "HEAD":
            # The length a GET would send, so that the server does not frame an
            # empty body as chunked (waitress would send a last chunk anyway).
            with items:
                length = sum(map(len, fmt.encode_list(items)))
            response = self.respond(fmt, b"", tag)
            response.content_length = length
            return response
        response = self.respond(fmt, fmt.encode_list(items), tag)
        # Closed by the WSGI server after the body was sent.
        response.call_on_close(items.close)
        return response

    def archive_page(self, request: Request, host: str, node: str, store: str,
                     fmt: Format) -> Response:
        """One page of a MAM-style query on a list store (README "Archive
        queries"): the page's items as a plain GET gives items, the paging in
        ``Link`` (rel next/prev) and ``Archive-*`` headers."""
        args = request.args
        try:
            size = _page_size(args.get("max"))
            start = archive_query.parse_time(args["start"]) if "start" in args else None
            end = archive_query.parse_time(args["end"]) if "end" in args else None
            hint = _position(args.get("at"))
        except archive_query.ArchiveQueryError as err:
            raise BadRequest(f"bad query: {_one_line(err)}") from None
        with self.dm.list_open(node, host, store) as view:
            if len(view) == 0:
                raise NotFound(f"no data in store {store!r}")
            try:
                page = archive_query.query_archive(
                    view, max_items=size, start=start, end=end, with_jid=args.get("with"),
                    after=args.get("after"), before=args.get("before"),
                    after_at=hint if "after" in args else None,
                    before_at=hint if "before" in args else None)
            except archive_query.ItemNotFoundError as err:
                raise NotFound(f"no item with key {err.key!r} matches the query") from None
            except archive_query.ArchiveQueryError as err:
                raise BadRequest(f"bad query: {_one_line(err)}") from None
            body = b"".join(fmt.encode_list(page.items))
        response = Response(body, status=200, content_type=f"{fmt.media_type}; charset=utf-8")
        kept = {k: args[k] for k in ("start", "end", "with") if k in args}
        kept["max"] = str(size)
        links = []
        if page.has_next and page.last is not None:
            links.append(_link(request, {**kept, "after": page.last, "at": str(page.last_at)},
                               "next"))
        if page.has_previous and page.first is not None:
            links.append(_link(request, {**kept, "before": page.first,
                                         "at": str(page.first_at)}, "prev"))
        if links:
            response.headers["Link"] = ", ".join(links)
        if page.first is not None:
            response.headers["Archive-First-Key"] = quote(page.first, safe="")
        if page.last is not None:
            response.headers["Archive-Last-Key"] = quote(page.last, safe="")
        if page.total is not None:
            response.headers["Archive-Count"] = str(page.total)
        return response

    @staticmethod
    def negotiate(environ: WSGIEnvironment) -> Format:
        """The format the ``Accept`` header asks for (406 when none is available)."""
        accept = environ.get("HTTP_ACCEPT")
        if not accept or accept == "*/*":
            return DEFAULT_FORMAT
        accepted = Request(environ).accept_mimetypes
        if not accepted:
            return DEFAULT_FORMAT
        best = accepted.best_match(MEDIA_TYPES)
        if best is None:
            raise NotAcceptable(f"only {' and '.join(MEDIA_TYPES)} are available")
        return cast(Format, by_media_type(best))  # best is one of MEDIA_TYPES: never None

    @staticmethod
    def respond(fmt: Format, body: bytes | Iterator[bytes], tag: str,
                preconditions: Preconditions | None = None, store: str = "") -> Response:
        """200 with ``body`` and its ETag, or 304 / 412 as ``preconditions`` say."""
        not_modified = DataAccessApp.check_read(preconditions, fmt, tag, store)
        if not_modified is not None:
            return not_modified
        response = Response(body, status=200, content_type=f"{fmt.media_type}; charset=utf-8")
        response.set_etag(tag)
        return response

    @staticmethod
    def check_read(preconditions: Preconditions | None, fmt: Format, tag: str,
                   store: str) -> Response | None:
        """For GET and HEAD: None to serve the representation tagged ``tag``, a 304
        when If-None-Match lists its tag; 412 when If-Match does not."""
        if preconditions is None:
            return None
        failed = preconditions.evaluate(Served(fmt.name, tag))
        if failed is None:
            return None
        if failed[0] is Failed.IF_NONE_MATCH:
            response = Response(status=304)
            response.set_etag(tag)
            return response
        raise PreconditionFailed(f"store {store!r} {failed[1]}")

    # -- writes --------------------------------------------------------------------
    #
    # Each write is a function ``change(state, may_create)`` run by ``write`` under
    # the store's lock after the preconditions held against ``state`` (the store
    # as it is).  It returns False, having written nothing, when it needs the
    # store's directory and ``may_create`` is False (the directory did not exist,
    # so nothing was locked); it is then run again with the directory created and
    # locked.  A request whose preconditions fail so creates nothing.

    def write(self, request: Request, host: str, node: str, store: str, access: Access,
              preconditions: Preconditions | None,
              change: Callable[[StoreState, bool], bool], new_tag: bool = True) -> str | None:
        """Check the preconditions and make the change under the store's lock;
        the store's new ETag (in the format a GET with this Accept would get),
        None when there is nothing (or nothing the requester may read) or
        ``new_tag`` is False (an append: the tag of a list hashes all of it,
        which a POST should not pay for)."""
        with self.dm.lock(node, host, store) as exists:
            done, tag = self.write_locked(request, host, node, store, access, preconditions,
                                          change, exists, new_tag)
        if not done:
            with self.dm.lock(node, host, store, create=True):
                done, tag = self.write_locked(request, host, node, store, access,
                                              preconditions, change, True, new_tag)
        return tag

    def write_locked(self, request: Request, host: str, node: str, store: str, access: Access,
                     preconditions: Preconditions | None,
                     change: Callable[[StoreState, bool], bool],
                     may_create: bool, new_tag: bool) -> tuple[bool, str | None]:
        state = StoreState(self.dm, node, host, store, read=access.read, secrets=access.secrets)
        if preconditions is not None:
            failed = preconditions.evaluate(state)
            if failed is not None:
                raise PreconditionFailed(f"store {store!r} {failed[1]}")
        if not change(state, may_create):
            return False, None
        fmt = self.response_format(request) if new_tag else None
        if fmt is None:
            return True, None
        after = StoreState(self.dm, node, host, store, read=access.read, secrets=access.secrets)
        return True, after.tag(fmt.name)

    def response_format(self, request: Request) -> Format | None:
        """The format of the ETag a write answers with: the one a GET with the same
        ``Accept`` would get (None when it would get 406)."""
        try:
            return self.negotiate(request.environ)
        except NotAcceptable:
            return None

    def put_or_post(self, request: Request, host: str, node: str, store: str, access: Access,
                    preconditions: Preconditions | None) -> Response:
        value = self.decode_body(request)
        if request.method == "PUT":
            if not isinstance(value, (dict, list)):
                raise BadRequest("PUT needs a table (a JSON object or array)")

            def change(state: StoreState, may_create: bool) -> bool:
                if value and not may_create:
                    return False
                self.dm.store(node, host, store, value)  # an empty table removes the store
                return True
        else:
            def change(state: StoreState, may_create: bool) -> bool:
                if not may_create:
                    return False
                self.dm.list_append(node, host, store, value)
                return True
        tag = self.write(request, host, node, store, access, preconditions, change,
                         new_tag=request.method == "PUT")
        response = Response(status=201)
        # Absolute when the request named a valid Host, else a relative reference.
        base = request.host_url.rstrip("/") if request.host else ""
        response.headers["Location"] = (base + request.script_root + "/data/"
                                        + "/".join(quote(s, safe="") for s in (host, node, store)))
        if tag is not None:
            response.set_etag(tag)
        return response

    def patch(self, request: Request, host: str, node: str, store: str, access: Access,
              preconditions: Preconditions | None) -> Response:
        """A JSON merge patch (RFC 7396) of a keyval store's JSON representation;
        the result is checked and stored as a PUT body would be."""
        if request.mimetype != edits.MERGE_PATCH_TYPE:
            raise MergePatchOnly(f"PATCH needs Content-Type {edits.MERGE_PATCH_TYPE} "
                                 "(a JSON merge patch, RFC 7396)")
        body = self.read_body(request)
        self.validate(body, FORMATS["json"])  # the limits and syntax of any JSON body
        try:
            patch = edits.parse_patch(body)
        except ValueError as err:
            raise BadRequest(f"body is not valid json: {limits.brief(err)}") from None
        json_format = FORMATS["json"]

        def change(state: StoreState, may_create: bool) -> bool:
            current = state.value()
            if current is None and state.has_list():
                raise Conflict(f"store {store!r} is a list: PATCH changes keyval stores "
                               "(POST appends to a list)")
            representation = None if current is None else json_format.encode(current)
            try:
                text = edits.patched(representation, patch)
            except ValueError as err:
                raise BadRequest(limits.brief(err)) from None
            value = self.validate(text, json_format, "patched value")
            if not isinstance(value, (dict, list)):
                raise BadRequest("the patched value is not a table (a JSON object or array)")
            if value and not may_create:
                return False
            self.dm.store(node, host, store, value)  # an empty table removes the store
            return True

        tag = self.write(request, host, node, store, access, preconditions, change)
        response = Response(status=204)
        if tag is not None:
            response.set_etag(tag)
        return response

    def decode_body(self, request: Request) -> Any:
        fmt = by_media_type(request.mimetype)
        if fmt is None:
            raise BadRequest(f"Content-Type must be {' or '.join(MEDIA_TYPES)}")
        return self.validate(self.read_body(request), fmt)

    def read_body(self, request: Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise RequestEntityTooLarge(f"body larger than {self.max_body} bytes")
        body = request.stream.read(self.max_body + 1)
        if len(body) > self.max_body:
            raise RequestEntityTooLarge(f"body larger than {self.max_body} bytes")
        if not body:
            raise BadRequest("empty body")
        return body

    def validate(self, body: bytes, fmt: Format, what: str = "body") -> Any:
        """The value of a body (or of a patched value: ``what``) that may be stored."""
        # Counted before decoding: a refused body costs no memory (wsgi_app/limits.py).
        try:
            limits.check_values(body, fmt.name, self.max_values)
        except limits.TooManyValues as err:
            raise RequestEntityTooLarge(f"{what} holds more than {err.limit} values "
                                        "(tables and scalars)") from None
        try:
            value = fmt.decode(body, self.max_depth)
        except ValueError as err:
            raise BadRequest(f"{what} is not valid {fmt.name}: {limits.brief(err)}") from None
        if value is None or value is False:
            raise BadRequest(f"{what} holds no data (null or false)")
        non_finite = limits.find_non_finite(value)
        if non_finite is not None:  # 1e999 would be served back as inf, which is not JSON
            raise BadRequest(limits.non_finite_reason(non_finite).replace("body", what, 1))
        try:
            serialization.dumps(value)
        except (TypeError, ValueError) as err:
            raise BadRequest(f"{what} cannot be stored: {limits.brief(err)}") from None
        return value

    def delete(self, request: Request, host: str, node: str, store: str, access: Access,
               preconditions: Preconditions | None) -> Response:
        def change(state: StoreState, may_create: bool) -> bool:
            self.dm.store(node, host, store, None)
            self.dm.list_store(node, host, store, None)
            return True

        self.write(request, host, node, store, access, preconditions, change)
        return Response(status=204)


def preconditions_of(request: Request) -> Preconditions | None:
    """The request's If-Match and If-None-Match, None when it has neither."""
    headers = request.headers
    if_match = request.if_match if "If-Match" in headers else None
    if_none_match = request.if_none_match if "If-None-Match" in headers else None
    if if_match is None and if_none_match is None:
        return None
    return Preconditions(if_match, if_none_match)


class MergePatchOnly(UnsupportedMediaType):
    """415 for a PATCH that is not a JSON merge patch, saying which type is (RFC 5789)."""

    def get_headers(self, *args: Any, **kwargs: Any) -> list[tuple[str, str]]:
        return [*super().get_headers(*args, **kwargs), ("Accept-Patch", edits.MERGE_PATCH_TYPE)]


# Stringprep is slow and path segments repeat: memoized (bounded; errors are not cached).
_prep_host = functools.lru_cache(maxsize=4096)(prep_host)
_nodeprep = functools.lru_cache(maxsize=4096)(nodeprep)


class InsufficientStorage(HTTPException):
    """507: the data directory's filesystem is full (Werkzeug has no class for it)."""

    code = 507
    description = "no space left for the data"


def storage_failure(err: Exception, store: str, owner: str) -> HTTPException:
    """The HTTP error for a failure of the store, with a one-line reason that names
    no server path; the details, path included, go to the log."""
    if isinstance(err, CorruptFileError):
        log.error("damaged file %s: %s", err.filename, err, exc_info=err)
        return InternalServerError(
            f"stored data unusable: store {store!r} of {owner} is damaged "
            f"(line {err.lineno}, column {err.colno}: {_one_line(err.msg)})")
    if isinstance(err, (InvalidNameError, NameTooLongError)):
        return NotFound("no such user or host")
    if isinstance(err, ListBusyError):
        log.warning("store %r of %s kept changing under an append: %s", store, owner, err)
        return ServiceUnavailable(f"store {store!r} is being written by another process; "
                                  "try again", retry_after=1)
    log.error("storage failure on store %r of %s: %s", store, owner, err, exc_info=err)
    code = getattr(err, "errno", None)
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return InsufficientStorage(f"no space left to store {store!r}")
    if code == errno.EROFS:
        return ServiceUnavailable("the data directory is read-only")
    if code in (errno.EACCES, errno.EPERM):
        return InternalServerError(f"the service may not access store {store!r}")
    if isinstance(err, OSError):
        name = errno.errorcode.get(code or 0, "unknown error")
        return InternalServerError(f"storage failure on store {store!r} ({name})")
    return InternalServerError(f"stored data unusable: store {store!r} of {owner}")


QUERY_PARAMETERS = frozenset({"start", "end", "with", "after", "before", "max"})
"""Any of these on a GET of a list store makes it an archive query."""
DEFAULT_PAGE = 100
MAX_PAGE = 1000
"""Items in one page of an archive query: ``max`` defaults to the first, is capped at the second."""


def _page_size(text: str | None) -> int:
    if text is None:
        return DEFAULT_PAGE
    if not (text.isascii() and text.isdigit()) or len(text) > 9:
        raise archive_query.ArchiveQueryError(f"max must be a number of items, not {text!r}")
    return min(int(text), MAX_PAGE)


def _position(text: str | None) -> int | None:
    """The ``at`` position hint of a cursor this service gave out (ignored when wrong)."""
    if text is None or not (text.isascii() and text.isdigit()) or len(text) > 18:
        return None
    return int(text)


def _link(request: Request, params: dict[str, str], rel: str) -> str:
    return f'<{request.base_url}?{urlencode(params)}>; rel="{rel}"'


def keyval_headers(fmt: Format, body: bytes) -> tuple[tuple[str, str], ...]:
    """The headers of a 200 serving ``body``, a keyval store's value in ``fmt``."""
    return (("Content-Type", f"{fmt.media_type}; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("ETag", quote_etag(edits.keyval_tag(fmt.name, body))))


def _decoded(path: str) -> str:
    """A WSGI path (latin-1 code points for its bytes) as UTF-8 text, as Werkzeug's
    router saw it (an invalid sequence becomes U+FFFD)."""
    return path.encode("latin-1", "replace").decode("utf-8", "replace")


def error_response(exc: HTTPException) -> Response:
    """The exception as a response with a one-line plain-text reason, its headers kept."""
    headers = [(k, v) for k, v in exc.get_headers() if k.lower() != "content-type"]
    reason = _one_line(exc.description or exc.name)
    return Response(reason + "\n", status=exc.code, headers=headers,
                    content_type="text/plain; charset=utf-8")


def _one_line(err: object) -> str:
    return " ".join(str(err).split())


