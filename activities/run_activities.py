"""Temporal activities of JobRunWorkflow: thin adapters over the DB, the planner and the fleet driver."""

from __future__ import annotations

import asyncio
import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from core.db import Database
from core.logs import bind
from core.settings import Settings
from fleets.base import DONE_STATES, FleetDriver, FleetHandle, FleetStatus, LaunchSpec
from models.db import Artifact, Client, Job, Run, utcnow
from models.domain import TERMINAL_STATUSES
from models.workflow import (
    ERR_FLEET_LAUNCH,
    ERR_INFEASIBLE_WINDOW,
    ERR_INVALID_LAUNCH_SPEC,
    FinishRequest,
    LaunchCheck,
    LaunchCheckRequest,
    LaunchRequest,
    MonitorRequest,
    PlanRequest,
    PlanResult,
    RunUpdate,
)
from services.job_templates import template_at
from services.planning import InfeasibleWindow, plan_for_run, realised_emissions_g
from services.regions import NoCandidateRegion, home_region, launch_settings
from services.runs import merge_attempt
from services.webhooks import record_run_events, start_deliveries, to_start

log = logging.getLogger("orch.activities")


HEARTBEAT_EVERY_SEC = 5.0


async def _heartbeating(what: str, fn, *args):
    """Run blocking driver code in a thread, heartbeating meanwhile: a dead worker is noticed within the
    heartbeat timeout (not the much longer start-to-close), and cancellation can reach the activity."""
    task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    while True:
        done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_EVERY_SEC)
        if done:
            return task.result()
        activity.heartbeat(what)


def _bind(run_id: str) -> None:
    """Every log line of this activity (and the driver code it calls) carries run_id and workflow_id."""
    info = activity.info()
    bind(run_id=run_id, workflow_id=info.workflow_id, activity=info.activity_type, attempt=info.attempt)


def _before_launch(run: Run) -> bool:
    """No attempt has launched yet (the workflow only re-plans while it sleeps; this makes sure a late
    plan update can never move a run that already runs somewhere)."""
    return run.attempts == 0 and run.started_at is None and run.fleet is None


class RunActivities:
    """Activities share the process's DB engine and fleet driver (both thread-safe)."""

    def __init__(self, settings: Settings, db: Database, driver: FleetDriver):
        self.settings, self.db, self.driver = settings, db, driver

    # ---------- planning ----------
    @activity.defn
    async def plan_schedule(self, req: PlanRequest) -> PlanResult:
        _bind(req.run_id)
        try:  # heartbeating: a worker that dies mid-plan is noticed in 20 s, not the 2-minute timeout
            return await _heartbeating("planning", self._plan, req)
        except (InfeasibleWindow, NoCandidateRegion) as exc:  # neither gets better by retrying
            raise ApplicationError(str(exc), type=ERR_INFEASIBLE_WINDOW, non_retryable=True) from exc

    def _plan(self, req: PlanRequest) -> PlanResult:
        with self.db.session() as s:
            run = s.get_one(Run, req.run_id)
            job = s.get_one(Job, run.job_id)
            template = template_at(s, run.job_template_id, run.job_template_version)
            client = s.get_one(Client, run.client_id)
            return plan_for_run(
                s,
                self.settings,
                run,
                job,
                template,
                client,
                req.not_before,
                req.current_start,
                pin_region=req.retry_attempt is not None,
            )

    # ---------- bookkeeping ----------
    @activity.defn
    async def update_run(self, upd: RunUpdate) -> None:
        _bind(upd.run_id)
        await self._deliver(await asyncio.to_thread(self._update, upd))

    async def _deliver(self, delivery_ids: list[str]) -> None:
        """Start the delivery workflows of the events just recorded (after the commit). A worker that dies
        before this retries the activity, which finds the same pending deliveries."""
        if not delivery_ids:
            return
        with self.db.session() as s:
            items = to_start(s, delivery_ids)
        await start_deliveries(activity.client(), self.settings, items)

    def _update(self, upd: RunUpdate) -> list[str]:
        with self.db.session() as s:
            run = s.get(Run, upd.run_id, with_for_update=True)
            if run is None:
                raise ApplicationError(f"run {upd.run_id} not found", non_retryable=True)
            if run.status in TERMINAL_STATUSES:
                return record_run_events(s, run, upd.events)  # a finished run's record is final
            unlaunched = _before_launch(run)
            for field in upd.model_dump(exclude={"run_id", "attempt_record", "events"}, exclude_none=True):
                setattr(run, field, getattr(upd, field))
            if upd.attempt_record:
                run.attempt_log = merge_attempt(run.attempt_log, upd.attempt_record)
            region = (upd.plan or {}).get("region")
            if region and unlaunched:
                # the plan's region is the run's; once an attempt launched it stays where it runs
                run.region = str(region)
            run.updated_at = utcnow()
            pending = record_run_events(s, run, upd.events)
        log.info("run %s -> %s", upd.run_id, upd.status)
        return pending

    @activity.defn
    async def finish_run(self, req: FinishRequest) -> None:
        _bind(req.run_id)
        await self._deliver(await asyncio.to_thread(self._finish, req))

    def _finish(self, req: FinishRequest) -> list[str]:
        with self.db.session() as s:
            run = s.get_one(Run, req.run_id, with_for_update=True)
            if run.status in TERMINAL_STATUSES:
                return record_run_events(s, run, req.events)
            if req.attempt_record:
                run.attempt_log = merge_attempt(run.attempt_log, req.attempt_record)
            run.status, run.status_reason, run.exit_code = req.status, req.status_reason, req.exit_code
            run.attempts = max(run.attempts, req.attempts)
            run.started_at = req.started_at or run.started_at
            run.finished_at, run.updated_at = req.finished_at, utcnow()
            if req.started_at is not None:
                run.runtime_sec = (req.finished_at - req.started_at).total_seconds()
                try:
                    run.carbon_realised_g = realised_emissions_g(
                        s, self.settings, run, req.started_at, req.finished_at
                    )
                except Exception:  # noqa: BLE001 - the estimate is informative; never fail the run over it
                    log.warning("realised carbon estimate failed for run %s", run.id, exc_info=True)
            pending = record_run_events(s, run, req.events)
        log.info("run %s finished %s", req.run_id, req.status)
        return pending

    @activity.defn
    async def check_launch(self, req: LaunchCheckRequest) -> LaunchCheck:
        """Just before each launch: a suspended client's run, one whose record is already final (e.g.
        cancelled in the DB while it had no workflow), or one recorded for a region the client's
        ``allowed_regions`` no longer list, must not launch."""
        _bind(req.run_id)
        return await asyncio.to_thread(self._check_launch, req)

    def _check_launch(self, req: LaunchCheckRequest) -> LaunchCheck:
        with self.db.session() as s:
            run = s.get(Run, req.run_id)
            if run is None:
                return LaunchCheck(allowed=False, reason="the run's record no longer exists")
            if run.status in TERMINAL_STATUSES:
                return LaunchCheck(allowed=False, reason=run.status_reason or f"run already {run.status}")
            client = s.get(Client, run.client_id)
            if client is None or client.status != "active":
                status = client.status if client is not None else "deleted"
                log.info("run %s not launched: client %s is %s", run.id, run.client_id, status)
                return LaunchCheck(allowed=False, reason=f"client {status}")
            if run.region and client.allowed_regions and run.region not in client.allowed_regions:
                # residency is the client's current word: a region it removed after planning is not used
                log.info("run %s not launched: region %s no longer allowed", run.id, run.region)
                return LaunchCheck(
                    allowed=False,
                    reason=f"region {run.region} is no longer among the client's allowed regions",
                )
        return LaunchCheck(allowed=True)

    # ---------- fleet ----------
    @activity.defn
    async def launch_fleet(self, req: LaunchRequest) -> FleetHandle:
        _bind(req.run_id)
        from fleets.ec2 import FleetLaunchError

        spec = await asyncio.to_thread(self._spec, req)
        activity.heartbeat("launching")
        try:
            handle = await _heartbeating("launching", self.driver.launch, spec)
        except FleetLaunchError as exc:  # no capacity for this attempt: the workflow decides on a new one
            raise ApplicationError(str(exc), type=ERR_FLEET_LAUNCH, non_retryable=True) from exc
        except ValueError as exc:  # an unusable spec will not get better by retrying
            raise ApplicationError(str(exc), type=ERR_INVALID_LAUNCH_SPEC, non_retryable=True) from exc
        return handle

    def _spec(self, req: LaunchRequest) -> LaunchSpec:
        from core.aws_validation import render_session_name
        from fleets.base import AwsAccess

        with self.db.session() as s:
            run = s.get_one(Run, req.run_id)
            job = s.get_one(Job, run.job_id)
            template = template_at(s, run.job_template_id, run.job_template_version)
            art = s.get_one(Artifact, template.app_artifact_id)
            client = s.get_one(Client, run.client_id)
            aws = None
            if client.role_arn:
                home = home_region(template, client)
                region = run.region or home  # runs planned before issue 14 have none: their home region
                where = launch_settings(client, region, home)
                aws = AwsAccess(
                    role_arn=client.role_arn,
                    external_id=client.external_id,
                    session_name=render_session_name(
                        client.session_name_template or "", client.id, run.id, job.id
                    ),
                    region=region,
                    subnet_ids=where["subnet_ids"],
                    security_group_ids=where["security_group_ids"],
                    instance_profile_arn=where["instance_profile_arn"],
                )
            return LaunchSpec(
                run_id=run.id,
                attempt=req.attempt,
                client_id=run.client_id,
                artifact_bucket=art.s3_bucket,
                artifact_key=art.s3_key,
                artifact_sha256=art.sha256,
                args={**template.default_args, **(job.args or {})},
                data_uri=template.data_uri,
                instance_type=run.fleet_template_id,
                capacity=req.capacity,
                aws=aws,
            )

    @activity.defn
    async def monitor_fleet(self, req: MonitorRequest) -> FleetStatus:
        """Poll the fleet until the attempt ends; heartbeats carry cancellation and worker-death detection."""
        _bind(req.fleet.run_id)
        while True:
            st = await asyncio.to_thread(self.driver.poll, req.fleet)
            if st.state in DONE_STATES:
                return st
            activity.heartbeat(st.state.value)
            await asyncio.sleep(req.poll_sec)

    @activity.defn
    async def terminate_fleet(self, handle: FleetHandle) -> FleetStatus:
        _bind(handle.run_id)
        activity.heartbeat("terminating")
        if not handle.ref:  # the workflow never got the launch's handle: rebuild what the driver needs
            handle.driver = self.driver.name
            spec = await asyncio.to_thread(
                self._spec, LaunchRequest(run_id=handle.run_id, attempt=handle.attempt)
            )
            if spec.aws is not None:
                a = spec.aws
                handle.ref = {
                    "client_id": spec.client_id,
                    "region": a.region,
                    "aws": {
                        "role_arn": a.role_arn,
                        "external_id": a.external_id,
                        "session_name": a.session_name,
                        "region": a.region,
                    },
                }
        return await _heartbeating("terminating", self.driver.terminate, handle)

    def all(self) -> list:
        return [
            self.plan_schedule,
            self.update_run,
            self.finish_run,
            self.check_launch,
            self.launch_fleet,
            self.monitor_fleet,
            self.terminate_fleet,
        ]
