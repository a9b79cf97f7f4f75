"""The API in the test's own process, with a supervisor that launches nothing."""

from __future__ import annotations

from fastapi import FastAPI

from service.api.app import create_app
from service.control.supervisor import Supervisor
from service.settings import Settings


class IdleSupervisor(Supervisor):
    """Starts no driver and no loop: a test's studies stay in the status it leaves them in
    (cancel, resume and delete still go through it as in the service)."""

    def reconcile(self) -> None:
        pass

    def start(self, interval: float = 2.0) -> None:
        pass


def app_without_drivers(settings: Settings) -> FastAPI:
    """The service's app for ``settings`` whose supervisor never launches a driver."""
    return create_app(settings, make_supervisor=IdleSupervisor)
