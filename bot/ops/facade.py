"""The application layer: the one API the cogs (and the CLI where natural) call.

It delegates to the monitor, the recovery operator, the check and drift pipelines and the store. It imports
bot.ops, bot.core, bot.delivery, bot.store and bot.config, never discord.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import httpx

from bot.config import Settings, Target
from bot.core.access import RoleIds
from bot.delivery.outbox import StoreGuard
from bot.delivery.webhook import WebhookFallback
from bot.ops.inflight import InFlight
from bot.ops.monitor import Monitor
from bot.ops.recovery import RecoveryOperator
from bot.postgrest.probe import Prober
from bot.store.sqlite import Store, open_store

log = logging.getLogger("pgrst_ops")


@dataclass
class Services:
    """Everything the cogs use, built once by the lifecycle owner and injected into the bot."""

    settings: Settings
    targets: dict[str, Target]
    http: httpx.AsyncClient
    prober: Prober
    operator: RecoveryOperator
    webhook: WebhookFallback
    monitor: Monitor | None = None
    autostart_monitor: bool = True  # tests drive the monitor's checks by hand
    guard: StoreGuard = field(default_factory=lambda: StoreGuard(None))  # the incident store, when open
    roles: RoleIds | None = None  # resolved at start (setup_hook); every check fails closed until then
    inflight: InFlight = field(default_factory=InFlight)  # changing actions running now (for a clean stop)

    @property
    def store(self) -> Store | None:
        return self.guard.store


async def open_services_store(services: Services) -> None:
    if services.guard.store is None:
        services.guard.store = await open_store(services.settings.incidents.store_path)
        if services.guard.store is None:
            services.guard.error = f"incident store {services.settings.incidents.store_path} could not be opened"
            return
    unfinished = await services.guard(lambda s: s.audit_mark_unfinished())
    if unfinished:
        log.warning("%d action(s) were cut short when pgrst-ops last stopped; /status shows them", unfinished)


async def close_services_store(services: Services) -> None:
    store, services.guard.store = services.guard.store, None
    if store is not None:
        await store.close()
