"""Each store (SQLite, PostgreSQL) offers every call of the IncidentStore interface, with the same parameters."""

from __future__ import annotations

import inspect

import pytest

from bot.store.interface import IncidentStore
from bot.store.postgres import PostgresStore
from bot.store.sqlite import Store


def interface_calls() -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in vars(IncidentStore).items()
        if inspect.iscoroutinefunction(member)
    }


def test_the_interface_names_what_the_rest_of_the_bot_calls():
    assert {"open_incident", "update_incident", "audit_begin", "outbox_add", "add_silence", "drift_memory"} <= set(
        interface_calls()
    )


@pytest.mark.parametrize("Store", [Store, PostgresStore], ids=["sqlite", "postgres"])
def test_each_store_implements_every_call_with_the_same_parameters(Store):
    for name, signature in interface_calls().items():
        implementation = getattr(Store, name, None)
        assert inspect.iscoroutinefunction(implementation), name
        assert inspect.signature(implementation).parameters.keys() == signature.parameters.keys(), name
        for param, spec in signature.parameters.items():
            assert inspect.signature(implementation).parameters[param].kind == spec.kind, (name, param)
            assert inspect.signature(implementation).parameters[param].default == spec.default, (name, param)
