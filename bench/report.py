"""Render bench/RESULTS.md from bench/results/*.json: one table of every figure with the
reference measured in the same run, their ratio, the command and the date.

    .venv/bin/python -m bench.report [--quick]

--quick renders the smoke runs (<name>_quick.json) to RESULTS_quick.md instead. The sections
"## Notes" and "## Profile" of an existing RESULTS.md, and everything after the first of
them, are kept as they are (they are written by hand)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from bench.common import RESULTS, ROOT

OUT = ROOT / "bench" / "RESULTS.md"
PROFILE = "## Profile"
KEPT = ("## Notes", PROFILE)
Row = tuple[str, str, str, str, str, str]  # figure, value, reference, ratio, command, date
# Lead -> first SMS, p95, with the worker busy (issue 21)
SPEED_TO_LEAD_GOAL_MS = 50


def load(name: str, quick: bool) -> dict[str, Any] | None:
    path = RESULTS / f"{name}{'_quick' if quick else ''}.json"
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def num(value: Any, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    text = f"{float(value):,.{digits}f}"
    return f"{text} {unit}".strip()


def meta(result: dict[str, Any]) -> tuple[str, str]:
    command = result.get("command") or f"python -m bench.{result['benchmark']}"
    when = str(result.get("when", "-"))[:16].replace("T", " ")
    schema = result.get("schema")
    if schema:
        changed = ", changed during the run" if schema.get("changed_during_run") else ""
        when += f" (sql {schema['sha256_12'][:8]}{changed})"
    return f"`{command}`", when


def fake_rows(r: dict[str, Any]) -> list[Row]:
    cmd, when = meta(r)
    std, fast = r["stdlib_fake"], r["fast_fake"]
    return [
        (
            f"fake Retell alone, create-sms-chat req/s ({fast['clients']} keep-alive clients):"
            " fast (aiohttp) vs stdlib (tests' fake)",
            num(fast["requests_per_s"], "req/s"),
            num(std["requests_per_s"], "req/s (stdlib)"),
            f"{r['ratio_fast_to_stdlib']:.2f}",
            cmd,
            when,
        ),
        (
            "  fake's server CPU per request: req per server CPU-second, fast vs stdlib",
            num(fast.get("requests_per_server_cpu_s"), "req/CPU-s"),
            num(std.get("requests_per_server_cpu_s"), "req/CPU-s (stdlib)"),
            f"{fast['requests_per_server_cpu_s'] / std['requests_per_server_cpu_s']:.2f}"
            if fast.get("requests_per_server_cpu_s") and std.get("requests_per_server_cpu_s")
            else "-",
            cmd,
            when,
        ),
    ]


def worker_rows(r: dict[str, Any]) -> list[Row]:
    cmd, when = meta(r)
    rows: list[Row] = []
    by = r.get("by_workers") or {}
    one = by.get("1")
    rounds = r.get("rounds", 1)
    if one is not None and "bare_http_jobs_per_s" in one:
        per_round = ", ".join(
            f"{run['ratio_to_bare_http']:.2f}" for run in r.get("runs", []) if run["workers"] == 1
        )
        rows.append(
            (
                f"worker full send msg/s (claim -> create-sms-chat -> record), 1 process,"
                f" {r['messages']:,} msgs (medians of {rounds}) vs a pgqueuer job making only the"
                " same create-sms-chat call to the same fake (same pool, driver, batch, client),"
                f" run before and after each send; ratio: median of the rounds' ({per_round})",
                num(one["messages_per_s"], "msg/s"),
                num(one["bare_http_jobs_per_s"], "jobs/s (bare HTTP)"),
                f"{one['ratio_to_bare_http']:.2f}",
                cmd,
                when,
            )
        )
        rows.append(
            (
                "  the same full send vs pgqueuer no-op jobs/s (same pool, driver, batch)",
                num(one["messages_per_s"], "msg/s"),
                num(one["noop_jobs_per_s"], "jobs/s (no-op)"),
                f"{one['ratio_to_noop']:.2f}",
                cmd,
                when,
            )
        )
    elif one is not None:
        rows.append(
            (
                f"worker msg/s queued -> sent, 1 process, {r['messages']:,} msgs"
                f" (median of {rounds}) vs pgqueuer no-op jobs/s, same database",
                num(one["messages_per_s"], "msg/s"),
                num(one["noop_jobs_per_s"], "jobs/s (no-op)"),
                f"{one['ratio_to_noop']:.2f}",
                cmd,
                when,
            )
        )
    scaling = r.get("scaling")
    if scaling is not None:
        rates = scaling["messages_per_s"]
        per_round = ", ".join(f"{x:.2f}" for x in scaling["per_round"])
        rows.append(
            (
                f"worker msg/s, {scaling['workers'][-1]} processes vs {scaling['workers'][0]}"
                f" (same messages; ratio per round: {per_round})",
                num(rates[-1], "msg/s"),
                num(rates[0], "msg/s (1 process)"),
                f"{scaling['ratio_last_to_first']:.2f}",
                cmd,
                when,
            )
        )
    rows.append(
        (
            "fast fake alone req/s vs worker send rate (1 process), same run",
            num(r["fake_retell_alone"]["requests_per_s"], "req/s"),
            num(one["messages_per_s"] if one else None, "msg/s"),
            f"{r['fake_alone_to_send_rate']:.1f}" if "fake_alone_to_send_rate" in r else "-",
            cmd,
            when,
        )
    )
    for count, figures in by.items():
        rows.append(
            (
                f"worker peak RSS (VmHWM), {count} process(es), max over processes",
                num(figures["peak_rss_mb_per_worker"], "MB"),
                "-",
                "-",
                cmd,
                when,
            )
        )
    first = (r.get("runs") or [{}])[0]
    activity = first.get("database_activity")
    if activity:
        waits = activity["waits_mean"]
        locks = sum(v for k, v in waits.items() if k.startswith("Lock:"))
        rows.append(
            (
                "database backends active during the 1-process run (mean, sampled):"
                " of which waiting on row/transaction locks",
                num(locks, "waiting", 2),
                num(activity["active_backends_mean"], "active", 2),
                f"{locks / activity['active_backends_mean']:.2f}"
                if activity["active_backends_mean"]
                else "-",
                cmd,
                when,
            )
        )
    deaths = sum(len(run.get("worker_deaths", [])) for run in r.get("runs", []))
    rows.append(("worker processes that died during the runs", str(deaths), "0", "-", cmd, when))
    return rows


def tick_rows(r: dict[str, Any]) -> list[Row]:
    cmd, when = meta(r)
    rows: list[Row] = []
    for run in r["runs"]:
        size = f"{run['active_enrollments']:,}"
        same = all(all(parts.values()) for parts in run.get("same_rows_as_tick", {}).values())
        rows.append(
            (
                f"tick, {run['due']:,} due among {size} active: tick_ms vs bare set-based"
                f" statement (same writes{', rows checked equal' if same else ', ROWS DIFFER'})"
                " [ratio bare/tick]",
                num(run["tick_ms"], "ms"),
                num(run["bare_ms"], "ms (bare)"),
                f"{run['ratio_bare_to_tick']:.2f}",
                cmd,
                when,
            )
        )
        rows.append(
            (
                f"  tick rows/s among {size} vs the bare statement's rows/s",
                num(run["tick_rows_per_s"], "rows/s"),
                num(run["bare_rows_per_s"], "rows/s (bare)"),
                f"{run['tick_rows_per_s'] / run['bare_rows_per_s']:.2f}",
                cmd,
                when,
            )
        )
        rows.append(
            (
                f"  bare with the tick's checks done set-based too, among {size}, vs tick_ms"
                " [ratio bare_checked/tick]",
                num(run["bare_checked_ms"], "ms"),
                num(run["tick_ms"], "ms (tick)"),
                f"{run['ratio_bare_checked_to_tick']:.2f}",
                cmd,
                when,
            )
        )
        if "tick_new_session_ms" in run:
            rows.append(
                (
                    f"  tick in a new session (as pg_cron runs it) among {size} vs same session",
                    num(run["tick_new_session_ms"], "ms"),
                    num(run["tick_ms"], "ms"),
                    f"{run['tick_new_session_ms'] / run['tick_ms']:.2f}",
                    cmd,
                    when,
                )
            )
    growth = r.get("growth")
    if growth:
        rows.append(
            (
                f"tick growth {growth['from']:,} -> {growth['to']:,} active vs bare's growth",
                f"x{growth['tick']:.2f}",
                f"x{growth['bare']:.2f} (bare)",
                f"{growth['tick'] / growth['bare']:.2f}",
                cmd,
                when,
            )
        )
    return rows


def webhook_rows(r: dict[str, Any]) -> list[Row]:
    cmd, when = meta(r)
    intake, stl = r["intake"], r["speed_to_lead"]
    rows: list[Row] = [
        (
            f"intake leads/s, POST /webhooks/leads ({intake['clients']} clients) vs"
            " /bench/select1 (one `select 1`, same server, pool, middleware)",
            num(intake["leads_per_s"], "leads/s"),
            num(intake["select1_per_s"], "req/s (select1)"),
            f"{intake['ratio_leads_to_select1']:.2f}",
            cmd,
            when,
        )
    ]
    if "pgflow_serve_leads_per_s" in intake:
        rows.append(
            (
                "  leads/s through a real `pgflow serve` vs the bench server (same rounds)",
                num(intake["pgflow_serve_leads_per_s"], "leads/s"),
                num(intake["leads_per_s"], "leads/s (bench server)"),
                f"{intake['ratio_pgflow_serve_to_bench_server']:.2f}",
                cmd,
                when,
            )
        )
    lat = stl["latency_ms"]
    queue = stl["queue"]
    rows += [
        (
            f"speed to lead p50 / p95 / p99, POST -> fake receives create-sms-chat,"
            f" {stl['rate_per_s']:g} leads/s for {stl['seconds']:g} s, worker draining"
            f" ~{queue['backlog_target']:,} queued (depth min {queue['queue_depth_min']:,})",
            f"{lat['p50']:,.0f} / {lat['p95']:,.0f} / {lat['p99']:,.0f} ms",
            f"POST answered p95 {stl['response_ms']['p95']:,.0f} ms",
            f"p95/{SPEED_TO_LEAD_GOAL_MS} ms goal: {lat['p95'] / SPEED_TO_LEAD_GOAL_MS:.1f}",
            cmd,
            when,
        ),
        (
            "  of which queued -> claimed by the worker (database clock), p50 / p95 / p99",
            "{p50:,.0f} / {p95:,.0f} / {p99:,.0f} ms".format(
                **stl.get("stages_ms", {}).get("queued_to_claimed", {"p50": 0, "p95": 0, "p99": 0})
            ),
            "claimed -> sent p95 {:,.0f} ms".format(
                stl.get("stages_ms", {}).get("claimed_to_sent", {}).get("p95", 0)
            ),
            "-",
            cmd,
            when,
        ),
        (
            "  worker sends/s during that window (leads + backlog) vs lead arrival rate",
            num(stl["worker_sends_per_s_during_window"], "msg/s"),
            num(stl["achieved_rate_per_s"], "leads/s"),
            f"{stl['worker_sends_per_s_during_window'] / stl['achieved_rate_per_s']:.2f}",
            cmd,
            when,
        ),
        (
            "web process peak RSS (VmHWM): bench server; `pgflow serve`",
            num(r["web_peak_rss_mb"], "MB"),
            num(intake.get("pgflow_serve_peak_rss_mb"), "MB (pgflow serve)"),
            "-",
            cmd,
            when,
        ),
    ]
    return rows


def load_rows(r: dict[str, Any]) -> list[Row]:
    cmd, when = meta(r)
    intake, ref = r["intake"], r["select1_reference"]
    step1, step2, noop = r["step1_sends"], r["step2_sends"], r["pgqueuer_noop"]
    post, dbc = r["latency_ms_post_to_fake"], r["latency_ms_created_to_sent_db_clock"]
    pg = r["postgres_backends_memory"]
    rows: list[Row] = [
        (
            f"load: leads/s accepted, {r['leads']:,} leads to `pgflow serve` ({r['clients']}"
            f" clients) while {r['workers']} workers send, vs /bench/select1 req/s (before and"
            " after, same run)",
            num(intake["accepted_per_s"], "leads/s"),
            num(ref["per_s"], "req/s (select1)"),
            f"{r['ratio_leads_to_select1']:.2f}",
            cmd,
            when,
        ),
        (
            f"  load: signed Retell replies/s ({intake['replies']['chosen']:,}, sent as each"
            " step 1 is recorded, so paced by the sends) vs select1",
            num(intake["replies"]["per_s"], "req/s"),
            num(ref["per_s"], "req/s (select1)"),
            f"{r['ratio_replies_to_select1']:.2f}",
            cmd,
            when,
        ),
        (
            "  load: step 1 SMS/s (first to last sent_at, during the intake) vs leads/s accepted",
            num(step1["messages_per_s"], "msg/s"),
            num(intake["accepted_per_s"], "leads/s"),
            f"{r['ratio_step1_sends_to_leads']:.2f}",
            cmd,
            when,
        ),
        (
            f"  load: step 2 SMS/s ({step2['messages']:,} queued by one tick, drained by"
            f" {r['workers']} workers) vs pgqueuer no-op jobs/s, same database",
            num(step2["messages_per_s"], "msg/s"),
            num(noop["jobs_per_s"], "jobs/s (no-op)"),
            f"{r['ratio_step2_sends_to_noop']:.2f}",
            cmd,
            when,
        ),
        (
            "  load: lead -> SMS p50 / p95 / p99, POST start -> fake receives create-sms-chat"
            " (monotonic clock) vs created_at -> sent_at (database clock)",
            f"{post['p50']:,.0f} / {post['p95']:,.0f} / {post['p99']:,.0f} ms",
            f"{dbc['p50']:,.0f} / {dbc['p95']:,.0f} / {dbc['p99']:,.0f} ms (db clock)",
            f"p95/{SPEED_TO_LEAD_GOAL_MS} ms goal: {post['p95'] / SPEED_TO_LEAD_GOAL_MS:.1f}",
            cmd,
            when,
        ),
        (
            "  load: peak RSS (VmHWM), worker (max of each) vs `pgflow serve`",
            num(r["worker_peak_rss_mb"], "MB"),
            num(r["serve_peak_rss_mb"], "MB (serve)"),
            "-",
            cmd,
            when,
        ),
        (
            f"  load: PostgreSQL backends of the database (up to {pg['backends_max']}), sampled"
            " peak of summed RssAnon vs summed VmRSS (shared buffers counted per backend)",
            num(pg["sum_rssanon_mb_peak"], "MB"),
            num(pg["sum_vmrss_mb_peak"], "MB (VmRSS)"),
            f"max one backend {num(pg['max_backend_vmhwm_mb'], 'MB')}",
            cmd,
            when,
        ),
        (
            "  load: leads lost / duplicate sends / drip steps after a reply (must be 0)",
            f"{r['leads_lost']} / {r['duplicate_sends']} / {r['drip_after_reply']}",
            "0 / 0 / 0",
            "-",
            cmd,
            when,
        ),
    ]
    return rows


def inbox_rows(r: dict[str, Any]) -> list[Row]:
    cmd, when = meta(r)
    ref = r["cases"]["reference_bare_select"]
    rows: list[Row] = []
    for name, case in r["cases"].items():
        if name == "reference_bare_select":
            continue
        rows.append(
            (
                f"inbox p95 at {r['conversations']:,} conversations, page of {r['page']}:"
                f" {case['description']}",
                num(case["p95"], "ms"),
                num(ref["p95"], "ms (bare select of the page)"),
                f"{case['ratio_p95_to_reference']:.1f}",
                cmd,
                when,
            )
        )
    return rows


def dispatch_rows(r: dict[str, Any]) -> list[Row]:
    cmd, when = meta(r)
    bare = r["bare"]
    rows: list[Row] = []
    for run in r["engine"]:
        rows.append(
            (
                f"dispatch: {r['due']:,} due steps among {r['active_enrollments']:,} active,"
                f" tick -> last batch of {run['lanes']} dispatch_steps lane(s), seconds vs one"
                " bare set-based statement making the same writes [ratio bare/engine]",
                num(run["seconds"], "s"),
                num(bare["seconds"], "s (bare)"),
                f"{bare['seconds'] / run['seconds']:.2f}",
                cmd,
                when,
            )
        )
    best = r["best"]
    rows.append(
        (
            f"  dispatch: steps queued/s, best ({best['lanes']} lane(s)) vs bare statement;"
            f" goal: all {r['due']:,} within 60 s",
            num(r["due"] / best["seconds"], "steps/s"),
            num(bare["steps_per_s"], "steps/s (bare)"),
            f"{bare['seconds'] / best['seconds']:.2f}",
            cmd,
            when,
        )
    )
    return rows


def import_rows(r: dict[str, Any]) -> list[Row]:
    cmd, when = meta(r)
    n = f"{r['leads']:,}"
    top = list(r.get("functions_by_self_time", {}).items())[:4]
    where = ", ".join(
        f"{name.removeprefix('pgflow.')} {f['self_ms'] / 1000:.1f} s" for name, f in top
    )
    return [
        (
            f"import leads/s, `pgflow leads import` of {n} leads (set-based, chunks of"
            f" {r['chunk_rows']:,}, step 1 dispatched at once for each: queued, or held by a"
            " state rule) vs a bare COPY of the same file"
            " into a plain table (goal: >= 5,000 leads/s and >= 0.1x)",
            num(r["import_leads_per_s"], "leads/s"),
            num(r["bare_copy_rows_per_s"], "rows/s (bare COPY)"),
            f"{r['ratio_import_to_bare']:.3f}",
            cmd,
            when,
        ),
        (
            f"  import leads/s set-based vs `--row-by-row` on {r['row_by_row_sample']:,} new"
            " numbers (same database, same run)",
            num(r["import_leads_per_s"], "leads/s"),
            num(r["row_by_row_leads_per_s"], "leads/s (row by row)"),
            f"{r['ratio_import_to_row_by_row']:.1f}",
            cmd,
            when,
        ),
        (
            "  import: Python's share (file read, phones normalised, payloads as JSON, no"
            " database) vs the whole import; top self time in the database: " + where,
            num(r["python_prepare_s"], "s"),
            num(r["import_s"], "s (import)"),
            f"{r['python_share']:.2f}",
            cmd,
            when,
        ),
    ]


def render(quick: bool) -> str:
    rows: list[Row] = []
    missing: list[str] = []
    for name, make in (
        ("fake_retell_speed", fake_rows),
        ("worker", worker_rows),
        ("tick", tick_rows),
        ("dispatch", dispatch_rows),
        ("webhook", webhook_rows),
        ("load", load_rows),
        ("inbox", inbox_rows),
        ("import", import_rows),
    ):
        result = load(name, quick)
        if result is None:
            missing.append(name)
        else:
            rows += make(result)
    lines = [
        "# Benchmark results" + (" (smoke runs, --quick)" if quick else ""),
        "",
        "Rendered by `python -m bench.report` from `bench/results/*.json`. The machine has 2"
        " cores shared with PostgreSQL, the fakes, the load generators and other work: read"
        " the ratios (figure / reference measured in the same run), not the absolute figures."
        " The sql hash is of sql/migrations/*.sql when the run was made.",
        "",
        "| figure | value | same-run reference | ratio | command | date (UTC), sql hash |",
        "|---|---:|---:|---:|---|---|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    if missing:
        lines += ["", "Not run yet: " + ", ".join(f"`bench.{m}`" for m in missing) + "."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="render the --quick results")
    args = parser.parse_args()
    out = OUT if not args.quick else OUT.with_name("RESULTS_quick.md")
    kept = f"{PROFILE}\n\n"
    if out.exists():
        text = out.read_text()
        starts = [text.index(heading) for heading in KEPT if heading in text]
        if starts:
            kept = text[min(starts) :]
    out.write_text(render(args.quick) + "\n" + kept)
    print(out.read_text())


if __name__ == "__main__":
    main()
