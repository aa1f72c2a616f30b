"""benchmarks.quality's report: per-seed lines, the table per task and method, EvoMAL's learned loss
against each other method's, and the records as JSON (`--json`, read back by `--merge`)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from benchmarks import methods
from benchmarks.methods import TASKS, _p
from search_engine.scoring.metatest import compare
from search_engine.scoring.verdict import relative_improvement, verdict


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _rate(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def detail_line(r: dict) -> str:
    """One search seed: its loss, the means at tuned rates, p and the outcome."""
    head = f"  {r['task']} {r['label']} seed {r['search_seed']}: {r['seconds']:.0f} s ({r['cpu_seconds']:.0f} CPU s)"
    if r["record"] is None:
        return f"{head}; no loss found"
    t, rescale = r["record"]["tuned_lr"], r["record"].get("rescales_baseline")
    loss = r["expression"] + (f" (hall-of-fame rank {r['rank']})" if r["final_choice"] else "")
    if rescale is not None:
        loss += f" (the baseline x {rescale:.3g})"
    return (f"{head}; {loss}; tuned: learned {_number(t['learned_mean'])} (lr {_rate(t['learned_lr'])}) "
            f"vs baseline {_number(t['baseline_mean'])} (lr {_rate(t['baseline_lr'])}), p {_p(t['p_value'])}: "
            f"{r['outcome']}")


def _mean_percent(changes: list[float | None]) -> str:
    """The mean of the relative changes that are defined, as a percentage, with how many are not."""
    defined = [c for c in changes if c is not None]
    if not defined:
        return "n/a"
    missing = len(changes) - len(defined)
    return f"{100 * statistics.fmean(defined):+.1f}%" + (f" (n/a on {missing})" if missing else "")


def _mean_change(records: list[dict], tuned: bool) -> str:
    """Mean of (baseline - learned) / baseline over the seeds where it is defined, as a percentage."""
    return _mean_percent([None if r["record"] is None else
                          relative_improvement(r["record"]["tuned_lr"] if tuned else r["record"]) for r in records])


def table_row(records: list[dict]) -> list[str]:
    """One task and method over its search seeds."""
    first = records[0]
    count = {code: sum(r["outcome"] == code for r in records) for code in ("better", "tie", "worse", "none")}
    tally = f"{count['better']} / {count['tie']} / {count['worse']}" + (
        f" ({count['none']} found no loss)" if count["none"] else "")
    wall = statistics.median(r["seconds"] for r in records)
    cpu = statistics.median(r["cpu_seconds"] for r in records)
    return [first["task"], first["label"], first["protocol"], str(len(records)), tally,
            _mean_change(records, tuned=True), _mean_change(records, tuned=False), f"{wall:.0f} ({cpu:.0f})"]


def head_to_head(records: list[dict], reference: str = "EvoMAL (tuned)") -> list[list[str]]:
    """`reference`'s learned loss against each other method's, task by task, on the search seeds both
    ran: both at their own tuned rates on the same paired test seeds (the meta-test's seeds depend on
    the search seed only), a paired t-test per search seed (`verdict` as for the baseline: better when
    the reference's mean test metric is significantly lower). Seeds where either found no loss, or
    whose test seeds differ, are left out and counted."""
    by_arm: dict[tuple[str, str], dict[int, dict]] = {}
    for r in records:
        by_arm.setdefault((r["task"], r["label"]), {})[r["search_seed"]] = r
    rows = []
    for (task, label), others in by_arm.items():
        ours = by_arm.get((task, reference))
        if label == reference or ours is None:
            continue
        codes, changes, skipped = [], [], 0
        for seed in sorted(set(ours) & set(others)):
            a, b = ours[seed]["record"], others[seed]["record"]
            if a is None or b is None or a["tuned_lr"]["seeds"] != b["tuned_lr"]["seeds"]:
                skipped += 1
                continue
            c = compare(a["tuned_lr"]["learned"], b["tuned_lr"]["learned"], seeds=tuple(a["tuned_lr"]["seeds"]),
                        metric=a["tuned_lr"]["metric"]).to_dict()
            codes.append(verdict({"tuned_lr": c}, ours[seed]["kind"]).code)
            changes.append(relative_improvement(c))
        if not codes:
            continue
        tally = " / ".join(str(codes.count(code)) for code in ("better", "tie", "worse"))
        rows.append([task, f"{reference} vs {label}", str(len(codes)) + (f" ({skipped} left out)" if skipped else ""),
                     tally, _mean_percent(changes)])
    return rows


HEAD_TO_HEAD = ["task", "learned losses compared", "search seeds both ran",
                "first better / tie / worse (tuned, p<0.05)", "mean relative change of the first"]


def merged(paths: list[str]) -> tuple[dict, list[dict]]:
    """The budgets and records of several --json files (a table run in parts), in one list; refuses
    files whose budgets for a task differ and a search seed of one method found in two files."""
    budgets: dict[str, dict] = {}
    records: list[dict] = []
    seen: dict[tuple, str] = {}
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
            part_budgets, part_records = data["budgets"], data["records"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a benchmarks.quality --json file ({error})") from error
        for task, budget in part_budgets.items():
            if budgets.setdefault(task, budget) != budget:
                raise ValueError(f"{path}: {task} ran on other sizes than in an earlier file: {budget} vs {budgets[task]}")
        for r in part_records:
            key = (r["task"], r["label"], r["search_seed"])
            if key in seen:
                raise ValueError(f"{path}: {r['label']} seed {r['search_seed']} on {r['task']} is also in {seen[key]}")
            seen[key] = path
            records.append(r)
    return budgets, records


def report(records: list[dict], labels: list[str]) -> None:
    """The table (a row per task and method in the order of `labels`, search seeds in order), then each
    method against EvoMAL's tuned arm where both ran."""
    order = {label: i for i, label in enumerate(labels)}
    tasks = {task: i for i, task in enumerate(TASKS)}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in sorted(records, key=lambda r: (tasks.get(r["task"], len(tasks)), order.get(r["label"], len(order)),
                                            r["search_seed"])):
        groups.setdefault((r["task"], r["label"]), []).append(r)
    print()
    print_table([table_row(group) for group in groups.values()])
    versus = head_to_head([r for group in groups.values() for r in group])
    if versus:
        print()
        methods.print_table(versus, HEAD_TO_HEAD)


HEADER = ["task", "method", "protocol", "search seeds", "wins / ties / losses (tuned, p<0.05)",
          "mean relative change at tuned rates", "mean relative change at training.lr (paper's protocol)",
          "median search s (CPU s)"]


def print_table(rows: list[list[str]]) -> None:
    """The table as Markdown, HEADER first."""
    methods.print_table(rows, HEADER)


def write_json(path: str, budgets: dict, records: list[dict]) -> None:
    """Every per-seed record so far, with the budgets they ran on."""
    Path(path).write_text(json.dumps({"budgets": budgets, "records": records}, indent=1))

