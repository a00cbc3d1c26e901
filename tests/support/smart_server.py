"""A loopback SMART on FHIR EHR for tests: an OAuth 2 authorisation server (Authlib's Flask
``AuthorizationServer``: authorization code + PKCE S256, public and confidential clients) in
front of a real FHIR server, on 127.0.0.1.

- ``<iss>/.well-known/smart-configuration`` names ``/auth/authorize`` and ``/auth/token``.
- ``/auth/authorize`` checks the SMART extras (``aud`` equals ``iss``, a known ``launch``) and
  approves at once (no login page); a test can make it refuse (``deny``).
- ``/auth/token`` issues a bearer token with the launch's ``patient``; every call is recorded
  (content type, form, Authorization header) so tests can check how the code was exchanged.
- ``<iss>/…`` is the FHIR endpoint: it accepts only tokens it issued (401 otherwise), records
  each read and its Authorization header, can fail (500) or stall on purpose, and forwards the
  read to the upstream FHIR server with that server's own token, rewriting its base URL.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7636 import CodeChallenge
from flask import Flask, Response, jsonify, redirect, request
from werkzeug.serving import make_server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Client:
    client_id: str
    redirect_uri: str
    secret: str | None = None

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri == self.redirect_uri

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and secrets.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == ("client_secret_basic" if self.secret else "none")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    patient: str

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass
class SmartServer:
    upstream: str  # the real FHIR server's base URL
    upstream_token: str
    redirect_uri: str
    port: int = field(default_factory=free_port)
    clients: dict[str, Client] = field(default_factory=dict)
    launches: dict[str, str] = field(default_factory=dict)  # launch id -> patient id
    codes: dict[str, Code] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # access token -> patient id
    authorize_calls: list[dict[str, str]] = field(default_factory=list)
    token_calls: list[dict[str, Any]] = field(default_factory=list)
    fhir_calls: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization)
    deny: bool = False
    fail_fhir: str | None = None  # resource type whose searches answer 500
    stall_fhir: float = 0.0  # seconds every FHIR read waits before answering
    expires_in: int = 300

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def iss(self) -> str:
        return f"{self.base}/fhir"

    def new_launch(self, patient: str) -> str:
        launch = secrets.token_urlsafe(8)
        self.launches[launch] = patient
        return launch

    def start(self) -> SmartServer:
        self.clients["tma-timeline"] = Client("tma-timeline", self.redirect_uri)
        self.clients["tma-timeline-conf"] = Client("tma-timeline-conf", self.redirect_uri,
                                                   "conf-secret")
        self._server = make_server("127.0.0.1", self.port, self._app(), threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------------------------------
    def _app(self) -> Flask:
        app = Flask("loopback-smart-ehr")
        server_state = self
        pending: dict[str, str] = {}  # code -> patient, filled in save_authorization_code

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "none"]  # noqa: RUF012

            def save_authorization_code(self, code: str, req: Any) -> None:
                data = req.payload.data
                server_state.codes[code] = Code(
                    code, req.client.client_id, req.payload.redirect_uri, req.scope,
                    data.get("code_challenge"), data.get("code_challenge_method"),
                    server_state.launches[data["launch"]])

            def query_authorization_code(self, code: str, client: Any) -> Code | None:
                item = server_state.codes.get(code)
                return item if item and item.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                pending[authorization_code.code] = authorization_code.patient
                server_state.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> Any:
                return {"patient": authorization_code.patient}

        def save_token(token: dict[str, Any], req: Any) -> None:
            patient = req.user["patient"]
            server_state.tokens[token["access_token"]] = patient
            token["patient"] = patient  # SMART: the launch context in the token response

        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": self.expires_in}
        oauth = AuthorizationServer(app, query_client=self.clients.get, save_token=save_token)
        oauth.register_grant(CodeGrant, [CodeChallenge(required=True)])

        @app.get("/fhir/.well-known/smart-configuration")
        def smart_configuration() -> Response:
            return jsonify({
                "authorization_endpoint": f"{self.base}/auth/authorize",
                "token_endpoint": f"{self.base}/auth/token",
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "none"],
                "capabilities": ["launch-ehr", "client-public", "client-confidential-symmetric",
                                 "context-ehr-patient", "permission-v2"],
            })

        @app.get("/auth/authorize")
        def authorize() -> Any:
            args = request.args.to_dict()
            self.authorize_calls.append(args)
            target = args.get("redirect_uri", "")
            if self.deny:
                return redirect(f"{target}?error=access_denied&state={args.get('state', '')}")
            if args.get("aud") != self.iss or args.get("launch") not in self.launches:
                return redirect(f"{target}?error=invalid_request&state={args.get('state', '')}")
            user = {"patient": "from-launch"}
            grant = oauth.get_consent_grant(end_user=user)
            return oauth.create_authorization_response(grant=grant, grant_user=user)

        @app.post("/auth/token")
        def token() -> Any:
            self.token_calls.append({"content_type": request.mimetype,
                                     "form": request.form.to_dict(),
                                     "authorization": request.headers.get("Authorization")})
            return oauth.create_token_response()

        @app.get("/fhir/<path:path>")
        def fhir(path: str) -> Response:
            auth = request.headers.get("Authorization", "")
            self.fhir_calls.append((path, auth))
            bearer = auth.removeprefix("Bearer ")
            if not auth.startswith("Bearer ") or bearer not in self.tokens:
                return Response('{"resourceType":"OperationOutcome"}', 401,
                                mimetype="application/fhir+json")
            if self.stall_fhir:
                time.sleep(self.stall_fhir)
            if self.fail_fhir and path.startswith(self.fail_fhir):
                return Response("upstream broke", 500)
            query = request.query_string.decode()
            upstream = requests.get(f"{self.upstream}/{path}" + (f"?{query}" if query else ""),
                                    headers={"Authorization": f"Bearer {self.upstream_token}",
                                             "Accept": "application/fhir+json"}, timeout=30)
            body = upstream.text.replace(self.upstream, self.iss)
            return Response(body, upstream.status_code, mimetype="application/fhir+json")

        return app
