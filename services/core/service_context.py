"""What every service's app holds, typed, in one place: `app.state.service`.

The shared edges read it here rather than by string keys on `app.state`: authentication
(the credential store, the rate limits), the report turns, `/readyz` (the main stage, the
followers, the background tasks) and the 503 answers (the settings' Retry-After). A
service's lifespan fills in what it starts; its own typed context (the router's `Router`,
the segmenter's `Segmenter`) and the stores that shared APIs mounted in it need (the
webhooks', the simulator's) are `provide`d and found again by their type, through the one
dependency `context`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, TypeVar

from fastapi import Depends, FastAPI, Request

from services.core.settings import Settings

if TYPE_CHECKING:
    from services.core.background import BackgroundTasks
    from services.core.credentials import Credentials
    from services.core.rate_limits import RateLimits
    from services.core.report_turns import ReportTurns
    from services.core.stage import StageRunner

T = TypeVar("T")

logger = logging.getLogger(__name__)

# The status a service exits with once a stage ended for good (EX_SOFTWARE, sysexits.h):
# not 0, so that every supervisor (Kubernetes' restartPolicy, compose's restart policy,
# bin/run) sees a failure and restarts the process, its stages with it.
STAGE_ENDED_EXIT = os.EX_SOFTWARE


@dataclass
class ServiceContext:
    settings: Settings
    rate_limits: RateLimits
    report_turns: ReportTurns
    credentials: Credentials | None = None  # None until the lifespan opened the store
    background: BackgroundTasks | None = None
    stage: StageRunner | None = None  # the main stage: the service is ready while it runs
    # The stages that only follow events (the router's tracker and webhook outbox): one
    # that ended for good is down, as a background task is; one waiting out an outage is
    # not (readiness follows the main stage's batches there).
    followers: list[StageRunner] = field(default_factory=list)
    # A service instance running no main stage (a router serving the intake, its stage
    # in another instance) is ready once its lifespan started everything else.
    started_without_stage: bool = False
    # Asks the process to shut down gracefully and exit with the status given (serve.run:
    # uvicorn's should_exit, as on SIGTERM); until it is served, nothing to ask.
    exit: Callable[[int], None] = lambda _status: None
    _provided: dict[type, object] = field(default_factory=dict, init=False, repr=False)

    def provide(self, *parts: object) -> None:
        """Make these found by their type (`part`): a service's own context, and the
        stores of the shared APIs it mounts."""
        for part in parts:
            self._provided[type(part)] = part

    def part(self, kind: type[T]) -> T:
        found = self._provided.get(kind)
        if not isinstance(found, kind):
            raise LookupError(f"this service provides no {kind.__name__} (yet)")
        return found

    def ready(self) -> bool:
        if self.stage is None:
            return self.started_without_stage
        return self.stage.running

    def down(self) -> list[str]:
        """The background tasks that are down (none before any was started), the stages
        whose start waits for the broker to answer, and those that ended for good."""
        tasks = self.background.down() if self.background is not None else []
        waiting = [stage.name for stage in self._stages() if stage.waiting_to_start]
        return [*tasks, *waiting, *self.ended()]

    def ended(self) -> list[str]:
        """The stages, the main one or a follower, that ended for good: a stage is not
        restarted, the process is (`stage_ended`)."""
        return [stage.name for stage in self._stages() if stage.ended]

    def _stages(self) -> list[StageRunner]:
        """The main stage (once made) and the followers."""
        return [*([self.stage] if self.stage is not None else []), *self.followers]

    def stage_ended(self, name: str) -> None:
        """A stage ended for good (StageRunner's `on_ended`): the process shuts down as on
        SIGTERM (the other stages finish their batch in hand and commit it) and exits with
        STAGE_ENDED_EXIT, for its supervisor to start it again, the stage with it."""
        logger.critical("stage %s ended for good: the process exits (status %d) to be"
                        " restarted", name, STAGE_ENDED_EXIT,
                        extra={"stage": name, "exit_status": STAGE_ENDED_EXIT})
        self.exit(STAGE_ENDED_EXIT)


def install(app: FastAPI, settings: Settings) -> ServiceContext:
    """The app's context, with the rate limits and report turns of the settings; set
    once, in create_app."""
    from services.core.rate_limits import RateLimits
    from services.core.report_turns import ReportTurns

    rate_limits = RateLimits(settings.intake_rate_limit, settings.intake_byte_rate_limit)
    context = ServiceContext(settings, rate_limits, ReportTurns(settings.reports_at_once))
    app.state.service = context
    return context


def of(app: FastAPI) -> ServiceContext:
    """The context `install` gave the app; for an app built without one (a test mounting
    one API), one with the default settings."""
    context = getattr(app.state, "service", None)
    if isinstance(context, ServiceContext):
        return context
    return install(app, Settings())


async def context(request: Request) -> ServiceContext:
    """The one dependency every route reaches its service's context through."""
    return of(request.app)


Context = Annotated[ServiceContext, Depends(context)]
