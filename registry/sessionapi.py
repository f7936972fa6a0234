"""``Authorization: Handle`` on the registry's HTTP API: TLS client certificates and
Handle.Net REST API sessions (POST /api/sessions, GET|POST|DELETE /api/sessions/this).

A session goes: POST /api/sessions gives ``{"sessionId", "nonce"}``; the client signs
the nonce's bytes followed by its own cnonce's bytes with an HS_PUBKEY's private key
and sends ``Authorization: Handle sessionId="...", id="300:0.NA/X", type="HS_PUBKEY",
cnonce="...", alg="...", signature="..."`` (base64) on any request, which is then
authenticated as that key and uses the nonce up; later requests carry
``Authorization: Handle sessionId="..."`` alone. A session id is a bearer token, so it
is taken, like an HS_SECKEY secret, only over TLS or from this machine. Handlers
translate HTTP to the session store (registry/sessions.py) and back.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable

from aiohttp import web

from registry import clientcert, handleauth
from registry.authz import Signer
from registry.httpio import json_response
from registry.seckey import is_loopback
from registry.service import Authenticated
from registry.sessions import SessionStore
from registry.store import PostgresStore
from schemas.errors import AuthenticationFailed, AuthenticationNeeded

SESSIONS = "/api/sessions"
THIS = "/api/sessions/this"
_OPEN_FIRST = "open one with POST /api/sessions"


class HandleAuth:
    """Who an ``Authorization: Handle`` request is, and the session routes."""

    def __init__(
        self,
        store: PostgresStore,
        sessions: SessionStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.sessions = sessions
        self.clock = clock

    def install(self, app: web.Application) -> None:
        app.router.add_post(SESSIONS, self.open_session)
        app.router.add_get(THIS, self.this_session)
        app.router.add_post(THIS, self.this_session)
        app.router.add_delete(THIS, self.end_session)

    async def authenticate(self, request: web.Request) -> Authenticated | None:
        """The signer of a request with ``Authorization: Handle``; None for another
        scheme; raises when the credentials do not check."""
        asked = handleauth.handle_authorization(request.headers.get("Authorization"))
        if asked is None:
            return None
        if asked.session_id is not None:
            signer = await self._session_signer(request, asked)
            if signer is None:
                raise AuthenticationNeeded(
                    f"session {_shown(asked.session_id)} is not authenticated yet: sign its "
                    "nonce followed by your cnonce and send id, type, cnonce, alg and "
                    "signature with its sessionId"
                )
            return _authenticated(signer, self.clock())
        return await self._certificate(request)

    # --- routes ------------------------------------------------------------------------

    async def open_session(self, request: web.Request) -> web.Response:
        """A new session and its nonce; with an authenticating Authorization: Handle,
        that session's state instead (as GET /api/sessions/this)."""
        _check_transport(request)
        asked = handleauth.handle_authorization(request.headers.get("Authorization"))
        if asked is not None and asked.session_id is not None:
            return await self.this_session(request)
        session_id, nonce = await self.sessions.open(now=self.clock())
        body = {
            "responseCode": 1,
            "sessionId": session_id,
            "nonce": base64.b64encode(nonce).decode(),
            "authenticated": False,
        }
        return json_response(body, status=201)

    async def this_session(self, request: web.Request) -> web.Response:
        """The state of the session named in Authorization: Handle (authenticated by
        it first, when it carries a signature)."""
        asked = self._asked_session(request)
        assert asked.session_id is not None
        signer = await self._session_signer(request, asked)
        body: dict[str, object] = {
            "responseCode": 1,
            "sessionId": asked.session_id,
            "authenticated": signer is not None,
        }
        if signer is not None:
            body["id"] = str(signer)
        else:
            state = await self.sessions.get(asked.session_id, now=self.clock())
            if state is not None and state.nonce is not None:
                body["nonce"] = base64.b64encode(state.nonce).decode()
        return json_response(body)

    async def end_session(self, request: web.Request) -> web.Response:
        asked = self._asked_session(request)
        assert asked.session_id is not None
        if not await self.sessions.end(asked.session_id):
            raise AuthenticationFailed(_unknown(asked.session_id))
        return json_response({"responseCode": 1, "sessionId": asked.session_id, "ended": True})

    # --- deciding ----------------------------------------------------------------------

    def _asked_session(self, request: web.Request) -> handleauth.HandleAuthorization:
        _check_transport(request)
        asked = handleauth.handle_authorization(request.headers.get("Authorization"))
        if asked is None or asked.session_id is None:
            raise AuthenticationNeeded(
                f'{request.method} {THIS} needs Authorization: Handle sessionId="..." '
                f"naming the session; {_OPEN_FIRST}"
            )
        return asked

    async def _session_signer(
        self, request: web.Request, asked: handleauth.HandleAuthorization
    ) -> Signer | None:
        """Who the session stands for, after authenticating it when ``asked`` carries a
        signature; None while it is not authenticated."""
        _check_transport(request)
        assert asked.session_id is not None
        now = self.clock()
        state = await self.sessions.get(asked.session_id, now=now)
        if state is None:
            raise AuthenticationFailed(_unknown(asked.session_id))
        proof = asked.proof
        if proof is None:
            if state.signer is None:
                return None
            signer = _signer(state.signer)
            # the key that signed must still be there: replacing or removing an
            # HS_PUBKEY ends what it authenticated, as it would refuse a new signature
            record = await self.store.get(signer.handle)
            der = record.public_keys().get(signer.index) if record is not None else None
            if der is None or hashlib.sha256(der).digest() != state.key_hash:
                await self.sessions.end(asked.session_id)
                raise AuthenticationFailed(
                    f"the HS_PUBKEY at {signer} that authenticated session "
                    f"{_shown(asked.session_id)} was changed or removed, which ended it; "
                    f"{_OPEN_FIRST}"
                )
            return signer
        if state.nonce is None:
            raise AuthenticationFailed(
                f"session {_shown(asked.session_id)} was authenticated already and its "
                "nonce is used up: a signature over it counts once (send sessionId alone, "
                f"or {_OPEN_FIRST} for a new nonce)"
            )
        signer = Signer(handle=proof.handle, index=proof.index)
        record = await self.store.get(proof.handle)
        der = record.public_keys().get(proof.index) if record is not None else None
        if der is None:
            raise AuthenticationFailed(f"id {signer} names no HS_PUBKEY on this node")
        handleauth.verify_proof(proof, state.nonce, der)
        if not await self.sessions.authenticate(
            asked.session_id, state.nonce, str(signer), hashlib.sha256(der).digest(), now=now
        ):
            raise AuthenticationFailed(
                f"the nonce of session {_shown(asked.session_id)} was used by another "
                f"signature meanwhile; {_OPEN_FIRST}"
            )
        return signer

    async def _certificate(self, request: web.Request) -> Authenticated:
        header = request.get(clientcert.CLIENT_CERT)
        if not isinstance(header, str):
            raise clientcert.missing(secure=request.secure)
        cert = clientcert.certificate(header)
        signer = clientcert.identity(cert)
        clientcert.check_key(await self.store.get(signer.handle), signer, cert)
        return _authenticated(signer, self.clock())


def _check_transport(request: web.Request) -> None:
    if request.secure or is_loopback(request.remote):
        return
    raise AuthenticationNeeded(
        "a Handle session id is a bearer token: it is accepted only over https or from "
        "this machine, never in clear text across a network; use https://"
    )


def _authenticated(signer: Signer, now: float) -> Authenticated:
    # the same every request, as a secret key is: nothing to remember against replay
    return Authenticated(signer=signer, replay_token=None, expires=int(now))


def _signer(text: str) -> Signer:
    index, _, handle = text.partition(":")
    return Signer(handle=handle, index=int(index))


def _shown(session_id: str) -> str:
    """Enough of a session id to tell which, not enough to use it."""
    return repr(session_id[:6] + "...") if len(session_id) > 8 else repr(session_id)


def _unknown(session_id: str) -> str:
    return (
        f"session {_shown(session_id)} is unknown here: never opened, ended, or idle "
        f"past its timeout; {_OPEN_FIRST}"
    )
