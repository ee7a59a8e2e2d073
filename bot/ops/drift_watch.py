"""The slow loop's work for one environment: the schema version guard, then drift, and what drift leads to.

A stale drift (objects that exist but PostgREST does not serve) takes the recovery path when the
environment has auto_recover and no open incident or hold; a permission problem is a notice, once per
distinct finding. Messages go to the monitor's sink; reloads are recorded on the incident desk.
"""

from __future__ import annotations

import asyncio
import os
import time

from bot.config import Target
from bot.core.drift import DriftReport
from bot.messages.alert import build_info_line
from bot.ops.desk import IncidentDesk
from bot.ops.drift import check_drift
from bot.ops.recovery import RecoveryOperator
from bot.postgres.schema_version import check_target_schema_version
from bot.postgrest.probe import Prober

RECHECK_EVERY_S = 0.2  # after a drift reload, until the deadline


class DriftWatch:
    def __init__(self, desk: IncidentDesk, prober: Prober, operator: RecoveryOperator) -> None:
        self.desk = desk
        self.prober = prober
        self.operator = operator
        self._notices: dict[str, str] = {}

    async def slow_check(self, name: str) -> DriftReport:
        """Compare catalog and API; a stale drift (objects that exist) takes the recovery path."""
        target, state, rec = self.desk.targets[name], self.desk.states[name], self.desk.settings.recovery
        if target.config.schema_version is not None:
            state.schema_version = await check_target_schema_version(
                target, os.environ, connect_timeout=rec.db_connect_timeout_s, command_timeout=rec.db_command_timeout_s
            )
        drift = await self._check_drift(target)
        state.drift = drift
        if drift.stale and not (state.alert or self.desk.hold_reason(name)):
            await self._drift_recovery(target, drift)
        elif drift.ungranted:
            text = (
                f"❌ {name.upper()}: objects no API role may use (a permission problem, not a stale cache): "
                f"{drift.ungranted.describe()}. GRANT them to {', '.join(target.config.api_roles)} if the API "
                "should serve them."
            )
            await self._notice(name, text)
        return drift

    async def _check_drift(self, target: Target) -> DriftReport:
        rec = self.desk.settings.recovery
        return await check_drift(
            self.prober.client,
            target,
            max_body_bytes=self.desk.settings.monitor.drift_max_body_bytes,
            connect_timeout=rec.db_connect_timeout_s,
            command_timeout=rec.db_command_timeout_s,
            memory=self.desk.guard,
        )

    async def _notice(self, name: str, text: str) -> None:
        """Drift notices once per distinct finding: the slow loop must not repeat the same line every run."""
        if self._notices.get(name) == text:
            return
        self._notices[name] = text
        await self.desk.sink.post_line(name, build_info_line(name, text))

    async def _drift_recovery(self, target: Target, drift: DriftReport) -> None:
        """Objects exist but PostgREST does not serve them: reload (auto_recover), re-check, else warn."""
        name = target.name
        what = drift.summary
        if not target.config.auto_recover:
            text = f"⚠️ {name.upper()} schema drift: {what}. Reload with `/reload {name}` (auto_recover is off)."
            await self._notice(name, text)
            return
        result = await self.operator.reload_for_drift(target, actor="auto (drift)")
        self.desk.record_reload(result)
        after = drift
        if result.notify_sent:
            deadline = time.monotonic() + self.desk.settings.recovery.deadline_s
            while time.monotonic() < deadline:
                await asyncio.sleep(RECHECK_EVERY_S)
                after = await self._check_drift(target)
                if not after.stale:
                    break
            self.desk.states[name].drift = after
        if result.notify_sent and not after.stale:
            text = f"✅ {name.upper()} schema drift fixed by a reload: {drift.missing_in_api.describe() or what}."
        else:
            why = result.reason or f"still stale after the reload: {after.summary}"
            text = f"⚠️ {name.upper()} schema drift not fixed: {why}"
        await self._notice(name, text)
