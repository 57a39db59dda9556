"""The soak's worker app: one of the bench pipelines (tumbling, dedup, join) as an exactly_once
agent, its topics and state folder named by `SOAK_*` environment variables, so `weir worker
bench.soak_app:app` runs the very queries `make bench` measures."""

from __future__ import annotations

import os

from bench import pipelines
from weir.service.app import App

KIND = os.environ.get("SOAK_KIND", "tumbling")
TAG = os.environ.get("SOAK_TAG", "soak")

app = App(f"soak-{KIND}-{TAG}", processing_guarantee="exactly_once")
_out = app.topic(os.environ.get("SOAK_OUT", f"soak-{KIND}-out-{TAG}"))

if KIND == "join":
    _orders = app.topic(os.environ.get("SOAK_ORDERS", f"soak-orders-{TAG}"))
    _payments = app.topic(os.environ.get("SOAK_PAYMENTS", f"soak-payments-{TAG}"))
    app.agent(_orders, _payments, sink=_out, name="pipeline")(pipelines.join)
elif KIND in ("tumbling", "dedup"):
    _in = app.topic(os.environ.get("SOAK_IN", f"soak-{KIND}-in-{TAG}"))
    app.agent(_in, sink=_out, name="pipeline")(getattr(pipelines, KIND))
else:
    raise SystemExit(f"SOAK_KIND must be tumbling, dedup or join, not {KIND!r}")
