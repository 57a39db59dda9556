"""The rules Spark (3.4+) applies to chains of stateful operators, checked when a query is
built: where a watermark may be declared, and which operator may follow which."""

from __future__ import annotations

from weir.tables.operator import OutputMode
from weir.tables.plan import Node, topo


def check_watermarks(nodes: list[Node]) -> None:
    """Refuse, as Spark does, a watermark declared again after a stateful operator that
    passes one on: each operator's watermark comes from the one before it."""
    carries: dict[int, bool] = {}
    for n in nodes:
        op = n.op
        up = any(carries.get(id(p), False) for p in n.parents)
        if op is None:
            carries[id(n)] = False
        elif op.declares_watermark:
            if up and _stateful_between(n):
                raise ValueError(
                    f"Redefining watermark is disallowed: {op.name} comes after a stateful "
                    "operator that already passes a watermark on; declare watermarks on the "
                    "inputs, before the first stateful operator"
                )
            carries[id(n)] = True
        else:
            carries[id(n)] = up and (not op.stateful or op.output_watermark(0) is not None)


def check_chain(nodes: list[Node], output_mode: OutputMode) -> None:
    """Refuse, as Spark does, a stateful operator that would take rows of an upstream one as
    late (see `Operator.emits_late_rows`)."""
    for n in nodes:
        op = n.op
        if op is None or not (op.stateful and op.watches_event_time()):
            continue
        for m in topo(n)[:-1]:
            if m.op is not None and m.op.stateful and m.op.emits_late_rows(output_mode):
                raise ValueError(
                    "Detected pattern of possible 'correctness' issue due to global "
                    f"watermark: {m.op.name} can emit rows older than the watermark in "
                    f"{output_mode} output mode, and {op.name} after it would drop them as "
                    "late. Use append output mode (and no event-time timeout) upstream, or "
                    "split the pipeline in two queries"
                )


def _stateful_between(node: Node) -> bool:
    """True when a stateful operator lies upstream of `node`."""
    return any(m.op is not None and m.op.stateful for m in topo(node)[:-1])
