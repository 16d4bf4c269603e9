"""`llm-energy runs | show | export | compare | delete`: the run history from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..core.schema import SUMMARY_LABELS
from ..errors import InvalidInputError
from ..view.text import fmt_sig, kind_text

__all__ = [
    "FORMATS",
    "RUNS_COLUMNS",
    "cmd_compare",
    "cmd_delete",
    "cmd_export",
    "cmd_prune",
    "cmd_runs",
    "cmd_show",
    "register",
]

FORMATS = ("json", "csv", "parquet", "trace")
RUNS_COLUMNS = ("decode_j_per_token", "prefill_j_per_prompt_token", "decode_tokens_per_s",
                "total_energy_j")  # fmt: skip
"""Summary figures of the `runs` table, headed by their SUMMARY_LABELS names."""


def register(sub: argparse._SubParsersAction) -> None:
    def add(name: str, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.add_argument(
            "--store",
            metavar="PATH",
            help="run store file (default: $LLM_ENERGY_STORE or user data)",
        )
        return p

    p = add("runs", "List stored runs, newest first, with their summaries (or: runs prune).")
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array (schema docs/schemas/runs.schema.json)",
    )
    p.add_argument("--model", help="only runs whose model name contains this (default: all)")
    p.add_argument("--tag", help="only runs with this tag (default: any)")
    p.add_argument("--experiment", help="only runs of this experiment (default: any)")
    p.add_argument(
        "--status", help="only runs with this status (completed, incomplete, …; default: any)"
    )
    p.add_argument("--limit", type=int, default=None, help="at most N runs (default: all)")
    p.set_defaults(func=cmd_runs)
    runs_sub = p.add_subparsers(dest="runs_command", metavar="prune")
    prune = runs_sub.add_parser(
        "prune",
        help="delete old runs: all but the newest N, or those before a date",
        description="Delete finished runs from the store: all but the newest N (--keep-last) "
        "or those created before a date (--before); live runs are never deleted. Asks "
        "before deleting unless --yes.",
    )
    prune.add_argument(
        "--store",
        metavar="PATH",
        default=argparse.SUPPRESS,  # `runs --store X prune` and `runs prune --store X` both work
        help="run store file (default: $LLM_ENERGY_STORE or user data)",
    )
    which = prune.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--keep-last", type=int, metavar="N", help="keep the newest N finished runs (no default)"
    )
    which.add_argument(
        "--before",
        metavar="DATE",
        help="delete runs created before this ISO date or time, e.g. 2026-01-31 (local time "
        "unless it names a zone; no default)",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="list what would be deleted, delete nothing"
    )
    prune.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    prune.set_defaults(func=cmd_prune)

    p = add("show", "Show one run: settings, summary, phases.")
    p.add_argument("run_id", metavar="RUN_ID", help="a run id or a unique prefix of one")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the whole run as JSON (schema docs/schemas/run.schema.json)",
    )
    p.add_argument(
        "--price-per-kwh",
        type=float,
        metavar="USD",
        help="re-price the cost at this electricity price (shown only, not saved; by default a "
        "stored run keeps the price it was measured with, whatever LLM_ENERGY_PRICE_PER_KWH says)",
    )
    p.add_argument(
        "--carbon-g-per-kwh",
        type=float,
        metavar="G",
        help="re-compute CO2 at this carbon intensity (shown only, not saved; by default the "
        "run's own)",
    )
    p.set_defaults(func=cmd_show)

    p = add("export", "Export a run as JSON, CSV tables, Parquet tables or a Perfetto trace.")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--format", choices=FORMATS, required=True, help="json, csv, parquet or trace")
    p.add_argument("--out", required=True, metavar="PATH", help="a file (json, trace) or a folder")
    p.set_defaults(func=cmd_export)

    p = add(
        "compare",
        "Compare runs side by side (decode J/token, prefill J/prompt token, decode tokens/s, "
        "prefill/decode split, …).",
    )
    p.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    p.add_argument(
        "--json",
        action="store_true",
        help="print the comparison table as JSON (schema docs/schemas/compare.schema.json)",
    )
    p.set_defaults(func=cmd_compare)

    p = add("delete", "Delete a run and everything measured in it.")
    p.add_argument("run_id", metavar="RUN_ID")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_delete)


def _store(args: argparse.Namespace, read_only: bool = False, create: bool = True) -> Any:
    """The store named by --store (else the default). Read commands pass create=False: a
    mistyped path is an error naming it, not a new empty store."""
    from ..store import Store

    return Store(args.store, read_only=read_only, create=create)


def cmd_runs(args: argparse.Namespace) -> int:
    from ..store.paths import default_path

    if args.limit is not None and args.limit < 1:
        raise InvalidInputError(f"--limit must be a positive number of runs, got {args.limit}")
    if args.store is None and not default_path().exists():
        # a first-time user, before any run: not an error (a mistyped --store still is)
        if args.json:
            print("[]")
        else:
            print(f"no runs yet: the default store {default_path()} does not exist until a run")
        return 0
    store = _store(args, create=False)
    filters = {
        "model": args.model,
        "tag": args.tag,
        "experiment": args.experiment,
        "status": args.status,
        "limit": args.limit,
    }
    if args.json:
        print(json.dumps(store.run_records(**filters), indent=1))
        return 0
    records = store.run_records(**filters)
    if not records:
        print(f"no runs in {store.path}")
        return 0
    header = (
        "run", "created", "status", "model", "tokens",
        *(SUMMARY_LABELS[k] for k in RUNS_COLUMNS), "kind",
    )  # fmt: skip
    rows = []
    for r in records:
        s = r["summary"] or {}
        rows.append(
            (
                r["run_id"],
                r["created_at"][:19].replace("T", " "),
                r["status"],
                _short(r["model"] or "", 32),
                str(r["n_tokens"]),
                *(fmt_sig(s.get(k), " J" if k.endswith("_j") else "", 3) for k in RUNS_COLUMNS),
                kind_text(r["power_kind"] or s.get("energy_kind"), s.get("energy_scope")),
            )
        )
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    for row in (header, *rows):
        print("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = _store(args, create=False).load(args.run_id)
    price_note = None
    if args.price_per_kwh is not None or args.carbon_g_per_kwh is not None:
        measured = run.summary()
        run.reprice(price_per_kwh=args.price_per_kwh, carbon_g_per_kwh=args.carbon_g_per_kwh)
        price_note = "re-priced (measured with {:g} USD/kWh, {:g} g/kWh)".format(
            measured["price_per_kwh"], measured["carbon_g_per_kwh"]
        )
    if args.json:
        from ..core.jsonsafe import strict_json

        print(json.dumps(strict_json(run.to_dict()), indent=1, allow_nan=False))
        return 0
    from .run_text import print_run

    print(f"created    {run.created_at}")
    print(f"model      {run.model.get('name')}")
    print(f"level      {run.level}   experiment {run.experiment or '–'}   tags {run.tags or '–'}")
    print(f"prompt     {run.prompt[:200]!r}")
    print_run(run, sys.stdout, price_note=price_note)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .. import exports

    run = _store(args, create=False).load(args.run_id)
    if args.format == "json":
        paths = [exports.to_json(run, args.out)]
    elif args.format == "csv":
        paths = exports.to_csv(run, args.out)
    elif args.format == "parquet":
        paths = exports.to_parquet(run, args.out)
    else:
        paths = [exports.to_chrome_trace(run, args.out)]
    for p in paths:
        print(p)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from ..analysis import compare

    if len(args.run_ids) < 1:
        raise InvalidInputError("compare needs at least one run id")
    comparison = compare(args.run_ids, store=_store(args, create=False))
    if args.json:
        print(json.dumps(comparison.records(), indent=1))
    else:
        print(comparison.to_text())
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    store = _store(args)
    rid = store.resolve_id(args.run_id)
    if not args.yes:
        if not sys.stdin.isatty():
            raise InvalidInputError(f"refusing to delete run {rid} without --yes (no terminal)")
        answer = input(f"delete run {rid} and everything measured in it? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept")
            return 1
    store.delete(rid)
    print(f"deleted {rid}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    import datetime as dt

    from ..store.paths import default_path

    if args.keep_last is not None and args.keep_last < 0:
        raise InvalidInputError(f"--keep-last must be >= 0, got {args.keep_last}")
    before = None
    if args.before is not None:
        try:
            before = dt.datetime.fromisoformat(args.before.strip())
        except ValueError:
            raise InvalidInputError(
                f"--before {args.before!r}: not an ISO date or time (e.g. 2026-01-31 or "
                "2026-01-31T12:00)"
            ) from None
    if args.store is None and not default_path().exists():
        print(f"no runs yet: the default store {default_path()} does not exist")
        return 0
    store = _store(args, read_only=args.dry_run, create=False)
    ids = store.prune_candidates(keep_last=args.keep_last, before=before)
    rule = (
        f"all but the newest {args.keep_last} finished runs"
        if args.keep_last is not None
        else f"finished runs created before {args.before}"
    )
    if not ids:
        print(f"nothing to prune in {store.path} ({rule})")
        return 0
    if args.dry_run or not args.yes:
        created = {r["run_id"]: r for r in store.run_records() if r["run_id"] in set(ids)}
        for rid in ids:
            r = created.get(rid, {})
            print(
                f"  {rid}  {str(r.get('created_at', ''))[:19].replace('T', ' ')}  "
                f"{r.get('status', '')}  {_short(r.get('model') or '', 40)}"
            )
    if args.dry_run:
        print(f"would delete {len(ids)} run(s) from {store.path} ({rule}); --dry-run: none deleted")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise InvalidInputError(
                f"refusing to delete {len(ids)} run(s) without --yes (no terminal)"
            )
        answer = input(f"delete these {len(ids)} run(s) and everything measured in them? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("kept: none deleted")
            return 1
    gone = store.delete_runs(ids)
    print(f"removed {len(gone)} run(s) from {store.path} ({rule})")
    return 0


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
