"""What the SMART app answers when a step fails: a status, a short title, what happened and
what to do (rendered as a short page by ``web.error_handlers``; never a trace, a token or
anything about a patient)."""

from __future__ import annotations

from dataclasses import dataclass

from ..timeline import render_message

RELAUNCH = "Open the patient's chart in the EHR and launch the evidence timeline again."


@dataclass
class AppProblem(Exception):
    status: int
    title: str
    text: str
    action: str = RELAUNCH

    def page(self) -> str:
        return render_message(self.title, self.text, self.action)


UNEXPECTED = AppProblem(500, "Something went wrong",
                        "The evidence timeline failed unexpectedly; the service log has the "
                        "details (no patient data is logged).")
