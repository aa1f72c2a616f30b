"""The command-line interface: run a search with a progress bar; meta-test its result; list the plugins."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from search_engine import catalog
from search_engine.config import ConfigError, load_config
from search_engine.evolution.checkpoint import CheckpointError

CHECKPOINT = "checkpoint.json"
RESULT = "result.json"
CHOSEN_RANK_HELP = ("which hall-of-fame entry (1 = best); default: the one `evaluate` chose and meta-tested, "
                    "else 1")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m search_engine", description="Learn loss functions (EvoMAL).")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("search", help="run the evolutionary search")
    s.add_argument("--config", required=True, help="experiment configuration (JSON)")
    s.add_argument("--out", required=True, help="folder for result.json and the checkpoint")
    s.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.json")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    e = sub.add_parser("evaluate", help="meta-test a search result against the baseline loss, "
                                        "on its own task or (with --dataset and --model) on another")
    source = e.add_mutually_exclusive_group(required=True)
    source.add_argument("--result", help="result.json written by `search`")
    source.add_argument("--loss", help="a JSON export of a learned loss (`export --format json`); "
                                       "needs --dataset and --model")
    e.add_argument("--dataset", default=None, help="transfer: meta-test on this dataset instead")
    e.add_argument("--model", default=None, help="transfer: meta-test with this model instead")
    e.add_argument("--data-root", default=None, help="transfer: folder of the target's torchvision data")
    e.add_argument("--out", default=None, help="with --loss: where to write the record (default: next to it)")
    e.add_argument("--seeds", type=int, default=None, help="number of seeds (default: config meta_test.seeds)")
    e.add_argument("--steps", type=int, default=None, help="training steps (default: config meta_test.steps)")
    e.add_argument("--rank", type=int, default=None,
                   help="which hall-of-fame entry to test (1 = best); default: the final choice, the best of the "
                        "first few compared at their own best learning rates on validation data (a transfer: 1)")
    e.add_argument("--tune-lr", action=argparse.BooleanOptionalAction, default=None,
                   help="also compare each loss at its own best learning rate, picked on validation data "
                        "(default: the configuration's meta_test.tune_lr, on unless set off; always on for a "
                        "transfer)")
    x = sub.add_parser("export", help="write a learned loss as a file for your own training code")
    x.add_argument("--result", required=True, help="result.json written by `search`")
    x.add_argument("--rank", type=int, default=None, help=CHOSEN_RANK_HELP)
    x.add_argument("--format", required=True, choices=tuple(catalog.EXPORT_FORMATS))
    x.add_argument("--out", default=None, help="output file (default: next to the result)")
    sh = sub.add_parser("shape", help="sample a learned loss on a grid (for plotting) as CSV and/or PNG")
    sh.add_argument("--result", required=True, help="result.json written by `search`")
    sh.add_argument("--rank", type=int, default=None, help=CHOSEN_RANK_HELP)
    sh.add_argument("--csv", default=None, help="write the samples as CSV here")
    sh.add_argument("--png", default=None, help="write a plot here (needs matplotlib)")
    pl = sub.add_parser("plugins", help="list the data sets and models installed plugins add, and those that failed")
    pl.add_argument("--check", action="store_true", help="also load each plugin data set and build each plugin "
                                                         "model on every data set it fits (imports torch)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        commands = {"search": cmd_search, "evaluate": cmd_evaluate, "export": cmd_export, "shape": cmd_shape,
                    "plugins": cmd_plugins}
        return commands[args.command](args)
    except (ConfigError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_search(args: argparse.Namespace) -> int:
    from search_engine.progress import ProgressPrinter
    from search_engine.study.driver import run_search
    from search_engine.study.result import write_result

    config = load_config(Path(args.config))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    printer = ProgressPrinter(config, enabled=not args.quiet)
    try:
        result = run_search(config, printer, checkpoint_path=out / CHECKPOINT, resume=args.resume)
    except KeyboardInterrupt:
        printer.close()
        print(f"interrupted; resume with --resume (checkpoint in {out / CHECKPOINT})", file=sys.stderr)
        return 130
    finally:
        printer.close()
    write_result(result, out / RESULT)
    print(describe_result(result.to_dict()))
    print(f"wrote {out / RESULT}")
    return 0


def describe_result(result: dict) -> str:
    """A few lines for people: best loss, its fitness, the baseline's, and the search's counts."""
    best, totals = result["best"], result["totals"]
    metric = catalog.metric_name(catalog.kind_of_baseline(result["baseline_loss"]))
    lines = [f"search {result['status']} in {result['seconds']:.1f} s"]
    if best:
        lines.append(f"best loss: {best['expression']}")
        lines.append(f"validation {metric}: {best['fitness']:.4f}")
    base = result["baseline_fitness"]
    if base is not None:
        lines.append(f"baseline ({result['baseline_loss']}) validation {metric}: {base:.4f}")
    lines.append(
        f"candidates: {totals['evaluated']} evaluated, {totals['rejected']} rejected, "
        f"{totals['cache_hits']} cache hits"
    )
    plan = result.get("plan")
    if plan:
        how = f"populations of up to {plan['chunk']}" if plan["strategy"] == "batched" else plan["strategy"]
        lines.append(f"evaluation: {how} on {plan['device']}")
    return "\n".join(lines)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from search_engine.evolution.checkpoint import write_json_atomic

    if args.dataset or args.model or args.loss:
        return cmd_transfer(args)
    if args.data_root or args.out:
        raise ValueError("--data-root and --out are for a transfer: give --dataset and --model too")
    from search_engine.scoring.metatest import evaluate_learned_loss
    from search_engine.scoring.protocol import search_rate_of
    from search_engine.tasks.task import load_task

    path = Path(args.result)
    result = _read_result(path)
    config = load_config(result["config"])
    seeds, steps = args.seeds or config.meta_test.seeds, args.steps or config.meta_test.steps
    config = _with_meta_test(config, seeds, steps)
    on_seed = lambda s: print(f"  seed {s} done", flush=True)  # noqa: E731
    if args.rank is None:
        from search_engine.scoring.final_choice import FINALISTS, meta_test_final

        tuned = config.meta_test.tune_lr if args.tune_lr is None else args.tune_lr
        if tuned:
            print(f"choosing among the {FINALISTS} best losses on validation data, each at its own best learning rate")
        record = meta_test_final(load_task(config), config, result["hall_of_fame"], result["baseline_loss"],
                                 on_seed=on_seed, tune_lr=args.tune_lr, search_rate=search_rate_of(result.get("plan")))
        if record["final_choice"]:
            print(describe_final_choice(record["final_choice"]))
    else:
        entry = _hall_entry(result, args.rank)
        print(f"meta-testing {entry['expression']} against {result['baseline_loss']}: {seeds} seeds x {steps} steps")
        record = {"rank": args.rank, **evaluate_learned_loss(
            load_task(config), config, entry["expression"], entry.get("weights"), result["baseline_loss"],
            on_seed=on_seed, network=entry.get("network"), tune_lr=args.tune_lr,
            search_rate=search_rate_of(result.get("plan")),
        )}
    print(describe_meta_test(record, catalog.kind_of_baseline(result["baseline_loss"])))
    result["meta_test"] = record
    write_json_atomic(path, result)
    print(f"added meta_test to {path}")
    return 0


def _with_meta_test(config, seeds: int, steps: int):
    """`config` with the meta-test's number of seeds and steps replaced."""
    import dataclasses

    return dataclasses.replace(config, meta_test=dataclasses.replace(config.meta_test, seeds=seeds, steps=steps))


def describe_final_choice(choice: dict) -> str:
    """The final choice for people: each finalist's validation metric at its own best rate."""
    if not choice.get("candidates"):
        return "final choice: the best entry (a network loss is not compared)"
    lines = [f"final choice on validation data ({choice['steps']} steps, each at its own best learning rate):"]
    for c in choice["candidates"]:
        mark = "*" if c["rank"] == choice["chosen"] else " "
        value = "diverged" if c["validation"] is None else f"{c['validation']:.4f}"
        lines.append(f" {mark} rank {c['rank']}: {value} at lr {c['lr']}  {c['expression']}")
    base = choice["baseline"]
    if base:
        value = "diverged" if base["validation"] is None else f"{base['validation']:.4f}"
        lines.append(f"   baseline: {value} at lr {base['lr']}")
    return "\n".join(lines)


def describe_meta_test(record: dict, kind: str) -> str:
    """The meta-test for people: the verdict, the comparison at each loss's own best learning rate,
    then the one at the search's rate (the paper's protocol) and with all weights at 1."""
    from search_engine.scoring.metatest import Comparison
    from search_engine.scoring.verdict import FIXED_LABEL, TUNED_LABEL, verdict

    lines = [verdict(record, kind).sentence]
    tuned = record.get("tuned_lr")
    if tuned:
        lines.append(f"{TUNED_LABEL} (learned {tuned['learned_lr']}, baseline {tuned['baseline_lr']}): "
                     + Comparison.from_dict(tuned).summary())
    lines.append(f"{FIXED_LABEL}: " + Comparison.from_dict(record).summary())
    if "symbolic" in record:
        lines.append("with all weights at 1: " + Comparison.from_dict(record["symbolic"]).summary())
    return "\n".join(lines)


def cmd_transfer(args: argparse.Namespace) -> int:
    """`evaluate --dataset X --model Y`: meta-test a learned loss on task X / Y. With --result, the
    record is added to result.json's "transfers" (one per hall-of-fame rank and target, a re-run
    replaces it); with --loss, it is written next to the export (or to --out)."""
    from search_engine.evolution.checkpoint import write_json_atomic
    from search_engine.scoring.transfer import transfer, transfer_config

    if not (args.dataset and args.model):
        raise ValueError("a transfer needs both --dataset and --model (the task to meta-test the loss on)")
    spec, source, path = _transfer_source(args)
    config = transfer_config(source, dataset=args.dataset, model=args.model, data_root=args.data_root,
                             seeds=args.seeds, steps=args.steps, loss_kind=spec.kind)
    print(f"meta-testing {spec.expression} (learned on {spec.dataset}/{spec.model}) on {args.dataset}/{args.model}: "
          f"{config.meta_test.seeds} seeds x {config.meta_test.steps} steps")
    record = transfer(spec, config, on_seed=lambda s: print(f"  seed {s} done", flush=True))
    print(describe_meta_test(record, spec.kind))
    if args.loss:
        out = Path(args.out) if args.out else path.with_name(f"{path.stem}.transfer-{args.dataset}-{args.model}.json")
        write_json_atomic(out, record)
        print(f"wrote {out}")
        return 0
    result = _read_result(path)
    record = {"rank": args.rank, **record}
    kept = [t for t in result.get("transfers") or [] if isinstance(t, dict) and
            (t.get("rank"), t.get("target")) != (args.rank, record["target"])]
    result["transfers"] = [*kept, record]
    write_json_atomic(path, result)
    print(f"added the transfer to {args.dataset}/{args.model} to {path} (under \"transfers\")")
    return 0


def _transfer_source(args: argparse.Namespace):
    """(the learned loss's spec, the configuration to start from, the file it came from)."""
    from search_engine.export.json_export import from_json_export
    from search_engine.export.spec import LearnedLossSpec

    if args.loss:
        path = Path(args.loss)
        try:
            data = json.loads(path.read_text())
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON: {exc.msg}") from exc
        spec = from_json_export(data)
        # an export keeps no training settings: the defaults (and --seeds/--steps) apply
        return spec, {"task": {"dataset": spec.dataset, "model": spec.model}}, path
    path = Path(args.result)
    result = _read_result(path)
    args.rank = chosen_rank(path, args.rank)
    _hall_entry(result, args.rank)  # names the valid ranks
    return LearnedLossSpec.from_result(result, args.rank), result["config"], path


def cmd_export(args: argparse.Namespace) -> int:
    from search_engine.export.formats import write_export

    out = write_export(args.result, chosen_rank(args.result, args.rank), args.format, args.out)
    print(f"wrote {out}")
    return 0


def cmd_shape(args: argparse.Namespace) -> int:
    from search_engine.export.formats import read_spec
    from search_engine.export.loss_shape import loss_shape, write_csv, write_png

    if not (args.csv or args.png):
        raise ValueError("give --csv FILE and/or --png FILE")
    shape = loss_shape(read_spec(args.result, chosen_rank(args.result, args.rank)))
    if args.csv:
        print(f"wrote {write_csv(shape, args.csv)}")
    if args.png:
        try:
            print(f"wrote {write_png(shape, args.png)}")
        except RuntimeError as exc:  # matplotlib is optional
            raise ValueError(str(exc)) from exc
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """What installed plugins add and which failed; with --check, each tried for real. Exit status 1
    when a plugin failed or a check did not pass."""
    found = catalog.installed_plugins()
    print(describe_plugins(found))
    failed = bool(found.errors)
    if args.check:
        from search_engine.tasks.plugin_check import check_installed

        results = check_installed()
        print("checks:" if results else "checks: no plugin to check")
        for passed, text in results:
            print(f"  {'ok    ' if passed else 'FAILED'}  {text}")
        failed = failed or not all(passed for passed, _ in results)
    return 1 if failed else 0


def describe_plugins(found) -> str:
    """The plugins of a `catalog.installed_plugins()` for people: data sets, models, failures."""
    lines = [f"data sets from plugins ({len(found.datasets)}):"]
    for name, p in found.datasets.items():
        f = p.facts
        size = f"{f.n_outputs} classes" if f.kind == "classification" else f"{f.n_outputs} target(s)"
        lines.append(f"  {name}: {f.label}; {f.kind}, {f.sample_count} samples of shape {f.input_shape}, {size}"
                     f"  [{p.origin.package}]")
    lines.append(f"models from plugins ({len(found.models)}):")
    for name, p in found.models.items():
        f = p.facts
        inputs = "any input" if f.min_image_side is None else f"images of at least {f.min_image_side}x{f.min_image_side}"
        kinds = " and ".join(f.kinds) if f.kinds else "every kind of task"
        lines.append(f"  {name}: {f.label}; {kinds}, {inputs}  [{p.origin.package}]")
    if found.errors:
        lines.append(f"plugins that failed and are not offered ({len(found.errors)}):")
        lines += [f"  {error}" for error in found.errors]
    return "\n".join(lines)


def chosen_rank(path: str | Path, rank: int | None) -> int:
    """`rank` if given; else the rank `evaluate` chose and meta-tested (result.json's meta_test), else 1.
    A JSON learned-loss export (not a search result) holds one loss: 1."""
    if rank is not None:
        return rank
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 1  # the command that reads the file names the problem
    meta = data.get("meta_test") if isinstance(data, dict) else None
    chosen = meta.get("rank") if isinstance(meta, dict) else None
    return chosen if isinstance(chosen, int) and not isinstance(chosen, bool) and chosen >= 1 else 1


def _hall_entry(result: dict, rank: int) -> dict:
    hof = result["hall_of_fame"]
    if not 1 <= rank <= len(hof):
        raise ValueError(f"--rank must be between 1 and {len(hof)} (hall of fame size)")
    return hof[rank - 1]


def _read_result(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc.msg}") from exc
    if not isinstance(data, dict) or data.get("format") != "lfl-search-result":
        raise ValueError(f"{path} is not an lfl search result")
    return data
