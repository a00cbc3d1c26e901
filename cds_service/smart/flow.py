"""The evidence-timeline app's three steps, free of Flask (the web layer only maps them to HTTP):

1. **launch** (``GET /app/launch?iss=&launch=``): ``iss`` must be a FHIR server the service may
   contact (compared like ``fhirServer``); any other gets a 400 page and no request at all. Then
   discovery, a pending session, and the redirect to the EHR's authorisation endpoint.
2. **callback** (``GET /app/callback?code=&state=``): the session from the cookie, ``state``
   checked, the code exchanged once, the token kept in the database; the cookie is rotated.
3. **page** (``GET /app/timeline``): the record read from ``iss`` with the token through the
   service's own FHIR client (patient-view templates, timeouts, budget, paging), the same
   evaluation as the card, rendered as the timeline.

Every failure is an :class:`AppProblem`: a status, a short title, what happened and what to do;
never a stack trace, a token or anything about a patient.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from ..errors import MissingData
from ..fhir import urls
from ..hooks import HookRequest
from ..logs import LOGGER_NAME, log_event, pseudonym
from ..runtime import Runtime
from ..services import evaluate, unavailable_data
from ..timeline import render_page
from . import oauth
from .problem import RELAUNCH, AppProblem
from .sessions import SessionProblem, SessionStore

log = logging.getLogger(LOGGER_NAME)

SERVICE = ("tma-bone-assessment", "patient-view")  # the app reads what the card reads


@dataclass(frozen=True)
class Redirect:
    location: str
    cookie: str | None  # a new session cookie value to set, if any


class SmartApp:
    def __init__(self, rt: Runtime) -> None:
        settings = rt.settings
        if not settings.smart_client_id or not settings.public_url:
            raise ValueError("the app needs CDS_SMART_CLIENT_ID and CDS_PUBLIC_URL")
        self.rt = rt
        self.client_id = settings.smart_client_id
        self.secret = settings.smart_client_secret
        self.redirect_uri = f"{settings.public_url}/app/callback"
        self.secure_cookie = settings.public_url.startswith("https://")
        self.sessions = SessionStore(rt.database, rt.now)

    # ----------------------------------------------------------------- 1. launch
    def launch(self, iss: str | None, launch: str | None) -> Redirect:
        if not iss or not launch:
            raise AppProblem(400, "Launch incomplete",
                             "The app was opened without the EHR's launch parameters (iss and "
                             "launch).", RELAUNCH)
        base = urls.allowed_server(iss, self.rt.app_servers())  # compared like fhirServer
        if base is None:
            log_event(log, logging.WARNING, "app.iss_not_allowed", iss=iss[:200])
            raise AppProblem(400, "FHIR server not allowed",
                             "This EHR's FHIR server is not one this service may contact, so "
                             "the app cannot be launched from it.",
                             "Ask the service's administrators to add the FHIR server to the "
                             "trusted issuers' fhirServers (or CDS_FHIR_SERVER_ALLOWLIST).")
        try:
            config = oauth.discover(self.rt.session, base, self.rt.settings.fhir_timeout)
        except oauth.LaunchError as exc:
            log_event(log, logging.WARNING, "app.launch_failed", reason=exc.message)
            raise AppProblem(502, "The EHR could not be reached",
                             f"The launch could not start: {exc.message}.") from None
        url, state, verifier = oauth.authorization_url(
            config, client_id=self.client_id, secret=self.secret,
            redirect_uri=self.redirect_uri, iss=base, launch=launch)
        cookie = self.sessions.start(base, config.token_endpoint, state, verifier)
        log_event(log, logging.INFO, "app.launch", iss=base)
        return Redirect(url, cookie)

    # ----------------------------------------------------------------- 2. callback
    def callback(self, cookie: str | None, params: dict[str, str]) -> Redirect:
        if "error" in params:
            error = "".join(ch for ch in params["error"][:40] if ch.isalnum() or ch in "_-")
            self.sessions.end(cookie)
            log_event(log, logging.WARNING, "app.authorization_refused", error=error)
            raise AppProblem(403, "Not authorised",
                             f"The EHR did not authorise the app ({error or 'no reason given'}).")
        try:
            pending = self.sessions.claim(cookie, params.get("state"))
        except SessionProblem as exc:
            log_event(log, logging.WARNING, "app.callback_rejected", reason=exc.reason)
            raise _session_problem(exc.reason) from None
        code = params.get("code")
        if not code:
            self.sessions.end(cookie)
            raise AppProblem(400, "Launch incomplete", "The EHR sent no authorisation code.")
        try:
            token = oauth.exchange(pending.token_endpoint, code=code,
                                   verifier=pending.code_verifier, client_id=self.client_id,
                                   secret=self.secret, redirect_uri=self.redirect_uri,
                                   timeout=self.rt.settings.fhir_timeout)
        except oauth.LaunchError as exc:
            self.sessions.end(cookie)
            log_event(log, logging.WARNING, "app.token_failed", reason=exc.message)
            raise AppProblem(502, "Authorisation failed", f"{exc.message[0].upper()}"
                             f"{exc.message[1:]}.") from None
        if token.patient is None:
            self.sessions.end(cookie)
            raise AppProblem(400, "No patient in context",
                             "The EHR authorised the app without a patient (the token response "
                             "has no patient), so there is no record to show.",
                             "Launch the app from a patient's chart.")
        fresh = self.sessions.complete(cookie or "", token.access_token, token.patient,
                                       token.expires_in)
        log_event(log, logging.INFO, "app.authorised", iss=pending.iss)
        return Redirect("/app/timeline", fresh)

    # ----------------------------------------------------------------- 3. the page
    def page(self, cookie: str | None) -> str:
        started = time.monotonic()
        try:
            session = self.sessions.ready(cookie)
        except SessionProblem as exc:
            raise _session_problem(exc.reason) from None
        service = self.rt.registry.service(*SERVICE)
        request = HookRequest(hook="patient-view", hook_instance=str(uuid.uuid4()),
                              context={"patientId": session.patient}, prefetch={},
                              fhir_server=session.iss, access_token=session.access_token)
        patient_hash = pseudonym(session.patient, self.rt.settings.log_hash_key)
        try:
            data = self.rt.data_for(service, request, (session.iss,))
        except MissingData as exc:
            log_event(log, logging.WARNING, "app.read_failed", patient=patient_hash,
                      reason=exc.message)
            raise AppProblem(502, "The record could not be read",
                             "The patient's record could not be read from the EHR's FHIR "
                             f"server: {_reasons(exc.message)}. Nothing is shown rather than "
                             "an incomplete picture.",
                             "Reload the page in a moment; if it keeps failing, launch the app "
                             "again from the EHR.") from None
        resources = data.all()
        evaluation = evaluate(resources, self.rt.registry.mappings, self.rt.now(),
                              session.patient, unavailable_data(data))
        if evaluation.record.amputation is None:
            log_event(log, logging.INFO, "app.page", patient=patient_hash, status="no-amputation",
                      duration_ms=round((time.monotonic() - started) * 1000))
            raise AppProblem(200, "No partial-foot amputation on record",
                             "This patient's record holds no index partial-foot amputation "
                             "(procedure or acquired-absence condition), so there is no "
                             "timeline to draw: the assessment applies only after one.",
                             "If the amputation is recorded elsewhere, code it as a Procedure in "
                             "the EHR.")
        html = render_page(evaluation, resources)
        log_event(log, logging.INFO, "app.page", patient=patient_hash, status="ok",
                  duration_ms=round((time.monotonic() - started) * 1000))
        return html


def _reasons(message: str) -> str:
    # "required data was neither prefetched nor fetchable (observations: FHIR server ...)"
    return message.split("(", 1)[1].rstrip(")") if "(" in message else message


def _session_problem(reason: str) -> AppProblem:
    if reason == "state":
        return AppProblem(400, "Launch could not be verified",
                          "The answer from the EHR does not belong to this browser's launch "
                          "(its state does not match), so it was refused.")
    if reason == "used":
        return AppProblem(400, "Launch already used",
                          "This launch has already been completed or is being completed.")
    return AppProblem(401, "Session expired",
                      "Your session with the evidence timeline has expired or was not found "
                      "(sessions last as long as the EHR's access token).")


__all__ = ["AppProblem", "Redirect", "SmartApp"]
