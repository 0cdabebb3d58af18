"""The ledger's read-only HTTP API (FastAPI): orders, trades, a slot's book, readings and the
daily summary, with slot-range and member filters and paging; JSON by default, CSV with
``?format=csv`` or ``Accept: text/csv``; OpenAPI docs at ``/docs``.

Member-level data (meter readings) is restricted to holders of the auditor API key
(``X-API-Key`` header) when one is configured (``PEERWATT_AUDITOR_KEY``); aggregate data stays
public. Bad parameters answer 422 with the reason; Peerwatt errors map to their HTTP status in
one place (:func:`create_app`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from peerwatt import __version__
from peerwatt.chain import connect
from peerwatt.errors import PeerwattError
from settlement.chain_audit import NodeState
from settlement.ledger.queries import Ledger

AUDITOR_KEY_ENV = "PEERWATT_AUDITOR_KEY"
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
UINT32_MAX = 2**32 - 1
INT64_MAX = 2**63 - 1  # SQLite's largest integer: bigger offsets and blocks cannot be bound to a query


@dataclass(frozen=True)
class ApiSettings:
    """What the service serves and who may read member-level data (built once, passed down)."""

    db: Path
    auditor_key: str | None = None
    rpc_url: str | None = None  # the node the audit compares balances with (none: not compared)

    @classmethod
    def from_env(cls, db: Path, rpc_url: str | None = None) -> ApiSettings:
        return cls(db, os.environ.get(AUDITOR_KEY_ENV) or None, rpc_url)


class Format(str, Enum):
    JSON = "json"
    CSV = "csv"


class Problem(BaseModel):
    """A refusal: the reason, or FastAPI's list of the parameters it could not validate."""

    detail: str | list[dict[str, Any]]


# What the schema documents beyond the JSON body: 422 with the reason (from a Peerwatt error or a
# check across parameters as well as from FastAPI's validation) and, for tables, the CSV body.
REFUSED: dict[int | str, dict[str, Any]] = {422: {"model": Problem, "description": "Bad parameters, with the reason"}}
TABLE = {**REFUSED, 200: {"content": {"text/csv": {"schema": {"type": "string"}}}}}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain Python values (ints stay exact; missing values become null)."""
    return frame.astype(object).where(frame.notna(), None).to_dict("records")  # type: ignore[no-any-return]


def _respond(frame: pd.DataFrame, fmt: Format | None, accept: str | None, page: tuple[int, int] | None) -> Response:
    if fmt is Format.CSV or (fmt is None and accept is not None and "text/csv" in accept):
        return PlainTextResponse(frame.to_csv(index=False, lineterminator="\n"), media_type="text/csv")
    body: dict[str, Any] = {"items": _records(frame)}
    if page is not None:
        limit, offset = page
        body.update(offset=offset, limit=limit, next_offset=offset + limit if len(frame) == limit else None)
    return JSONResponse(body)


def get_settings() -> ApiSettings:
    """The service's settings; :func:`create_app` provides them (tests may override them)."""
    raise RuntimeError("create_app provides the settings")


Settings = Annotated[ApiSettings, Depends(get_settings)]


@contextmanager
def open_ledger(config: ApiSettings) -> Iterator[Ledger]:
    """The ledger, read-only, for one request, opened, queried and closed in the endpoint's own
    worker thread: SQLite connections refuse other threads, and FastAPI would run a ``yield``
    dependency's set-up and clean-up in other worker threads than the endpoint's (under
    concurrent requests, a 500)."""
    opened = Ledger.open(config.db)
    try:
        yield opened
    finally:
        opened.store.close()


def auditor(
    config: Settings,
    api_key: Annotated[str | None, Header(alias="X-API-Key", description="The auditor API key.")] = None,
) -> None:
    if config.auditor_key is None:
        return
    if api_key is None:
        raise HTTPException(401, "member-level data needs the auditor API key (X-API-Key header)")
    if not secrets.compare_digest(api_key.encode(), config.auditor_key.encode()):
        raise HTTPException(403, "the API key is not the auditor's")


SlotFrom = Annotated[int | None, Query(ge=0, le=UINT32_MAX, description="First slot.")]
SlotTo = Annotated[int | None, Query(ge=0, le=UINT32_MAX, description="Last slot.")]
Member = Annotated[str | None, Query(description="A member's address (any case).")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Rows per page.")]
Offset = Annotated[int, Query(ge=0, le=INT64_MAX, description="Rows to skip.")]
AtBlock = Annotated[
    int | None, Query(ge=0, le=INT64_MAX, description="Block to replay up to (default: the last indexed).")
]
FormatQuery = Annotated[Format | None, Query(alias="format", description="json (default) or csv.")]
Accept = Annotated[str | None, Header()]


def create_app(settings: ApiSettings) -> FastAPI:
    """The application for one ledger file."""
    app = FastAPI(
        title="Peerwatt auditor's ledger",
        version=__version__,
        description="Every order, trade and meter reading of a Peerwatt community, rebuilt from contract events.",
    )

    app.dependency_overrides[get_settings] = lambda: settings

    @app.exception_handler(PeerwattError)
    async def peerwatt_error(_: Request, exc: PeerwattError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.http_status)

    @app.get("/status", responses=REFUSED, tags=["ledger"])
    def status(config: Settings) -> dict[str, Any]:
        """What the ledger indexes and how far."""
        with open_ledger(config) as ledger:
            return {
                "chain_id": ledger.binding.chain_id,
                "contracts": ledger.binding.contracts,
                "last_block": ledger.last_block(),
                "events": ledger.store.count("events"),
            }

    @app.get("/orders", responses=TABLE, tags=["market"])
    def orders(
        config: Settings,
        slot_from: SlotFrom = None,
        slot_to: SlotTo = None,
        member: Member = None,
        at_block: AtBlock = None,
        limit: Limit = DEFAULT_LIMIT,
        offset: Offset = 0,
        fmt: FormatQuery = None,
        accept: Accept = None,
    ) -> Response:
        """Orders in placement order with their fills and status (at a block)."""
        with open_ledger(config) as ledger:
            frame = ledger.orders(slot_from, slot_to, member, at_block, limit, offset)
        return _respond(frame, fmt, accept, (limit, offset))

    @app.get("/trades", responses=TABLE, tags=["market"])
    def trades(
        config: Settings,
        slot_from: SlotFrom = None,
        slot_to: SlotTo = None,
        member: Member = None,
        limit: Limit = DEFAULT_LIMIT,
        offset: Offset = 0,
        fmt: FormatQuery = None,
        accept: Accept = None,
    ) -> Response:
        """Trades in execution order; value = qty_wh * price // 1000."""
        with open_ledger(config) as ledger:
            frame = ledger.trades(slot_from, slot_to, member, limit, offset)
        return _respond(frame, fmt, accept, (limit, offset))

    @app.get("/book/{slot}", responses=TABLE, tags=["market"])
    def book(
        config: Settings,
        slot: Annotated[int, PathParam(ge=0, le=UINT32_MAX, description="Delivery slot.")],
        at_block: AtBlock = None,
        fmt: FormatQuery = None,
        accept: Accept = None,
    ) -> Response:
        """The resting orders of a slot's book at a block: asks then bids, best first."""
        with open_ledger(config) as ledger:
            frame = ledger.book(slot, at_block)
        return _respond(frame, fmt, accept, None)

    @app.get("/readings", responses=TABLE, tags=["members"], dependencies=[Depends(auditor)])
    def readings(
        config: Settings,
        slot_from: SlotFrom = None,
        slot_to: SlotTo = None,
        member: Member = None,
        limit: Limit = DEFAULT_LIMIT,
        offset: Offset = 0,
        fmt: FormatQuery = None,
        accept: Accept = None,
    ) -> Response:
        """Meter readings the oracle accepted (member-level: the auditor key when one is set)."""
        with open_ledger(config) as ledger:
            frame = ledger.readings(slot_from, slot_to, member, limit, offset)
        return _respond(frame, fmt, accept, (limit, offset))

    @app.get("/settlements", responses=TABLE, tags=["members"], dependencies=[Depends(auditor)])
    def settlements(
        config: Settings,
        slot_from: SlotFrom = None,
        slot_to: SlotTo = None,
        member: Member = None,
        limit: Limit = DEFAULT_LIMIT,
        offset: Offset = 0,
        fmt: FormatQuery = None,
        accept: Accept = None,
    ) -> Response:
        """Members' settlement results as the contract recorded them (member-level)."""
        with open_ledger(config) as ledger:
            frame = ledger.settlements(slot_from, slot_to, member, limit, offset)
        return _respond(frame, fmt, accept, (limit, offset))

    @app.get("/statements/{member}", responses=TABLE, tags=["members"], dependencies=[Depends(auditor)])
    def statements(
        config: Settings,
        member: Annotated[str, PathParam(description="The member's address (any case).")],
        slot_from: SlotFrom = None,
        slot_to: SlotTo = None,
        fmt: FormatQuery = None,
        accept: Accept = None,
    ) -> Response:
        """A member's statement per settled slot: reading, contracted and imbalance energy, energy
        and imbalance amounts, fees, share (profit shares less retained savings), net."""
        with open_ledger(config) as ledger:
            frame = ledger.statements(member, slot_from, slot_to)
        return _respond(frame, fmt, accept, None)

    @app.get("/shares", responses=TABLE, tags=["members"], dependencies=[Depends(auditor)])
    def shares(config: Settings, member: Member = None, fmt: FormatQuery = None, accept: Accept = None) -> Response:
        """Profit shares paid, per period and member."""
        with open_ledger(config) as ledger:
            frame = ledger.shares(member)
        return _respond(frame, fmt, accept, None)

    @app.get("/audit/report", responses=REFUSED, tags=["audit"], dependencies=[Depends(auditor)])
    def audit_report(
        config: Settings,
        slot_from: SlotFrom = None,
        slot_to: SlotTo = None,
    ) -> dict[str, Any]:
        """Every settled slot (in the range) recomputed from the indexed events and compared with
        what the contracts recorded; with the whole history and a node configured, every market
        balance and the market's solvency too. ``ok`` is false when anything is off."""
        if slot_from is not None and slot_to is not None and slot_from > slot_to:
            raise HTTPException(422, f"slot_from {slot_from} is after slot_to {slot_to}")
        slots = None
        if slot_from is not None or slot_to is not None:
            slots = range(slot_from or 0, (UINT32_MAX if slot_to is None else slot_to) + 1)
        state = None
        with open_ledger(config) as ledger:
            if config.rpc_url is not None and slots is None:
                contracts = ledger.binding.contracts
                state = NodeState(
                    connect(config.rpc_url),
                    contracts["PeerwattToken"],
                    contracts["CdaMarket"],
                    contracts["CommunitySettlement"],
                    ledger.last_block() or 0,
                )
            report = ledger.audit(state, None if state is None else state.parties(), slots)
            return {**report.to_dict(), "last_block": ledger.last_block(), "balances_checked": state is not None}

    @app.get("/summary/daily", responses=TABLE, tags=["community"])
    def daily(config: Settings, fmt: FormatQuery = None, accept: Accept = None) -> Response:
        """Per day: trades, traded energy and value, average price, metered and shared energy."""
        with open_ledger(config) as ledger:
            frame = ledger.daily_summary()
        return _respond(frame, fmt, accept, None)

    return app
