"""`Client`: one lfl server, one API token. Every call is one request (`wait` polls) to an
operation of the server's OpenAPI document (/api/openapi.json); `OPERATIONS` names them."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from lfl_client.errors import LflError, Timeout, error_for
from lfl_client.types import (
    Experiment,
    ExperimentDetail,
    LeaderboardEntry,
    LearnedLoss,
    Transfer,
    from_dict,
)

#: Client method -> (HTTP method, path under the API root, the OpenAPI operation id).
OPERATIONS: dict[str, tuple[str, str, str]] = {
    "experiments": ("GET", "/experiments/", "list_experiments"),
    "create_experiment": ("POST", "/experiments/", "create_experiment"),
    "experiment": ("GET", "/experiments/{pk}/", "get_experiment"),
    "cancel": ("POST", "/experiments/{pk}/cancel/", "cancel_experiment"),
    "leaderboard": ("GET", "/leaderboard/", "leaderboard"),
    "download": ("GET", "/losses/{pk}/download/{fmt}/", "download_loss"),
    "transfers": ("GET", "/losses/{pk}/transfers/", "list_transfers"),
    "transfer": ("POST", "/losses/{pk}/transfers/", "create_transfer"),
    "get_transfer": ("GET", "/transfers/{pk}/", "get_transfer"),
    "presets": ("GET", "/presets/", "list_presets"),
}

#: Client method -> the body fields it may send, and the query parameters it may send (each an input
#: of its operation in the OpenAPI document: a test checks).
BODY_FIELDS: dict[str, tuple[str, ...]] = {
    "create_experiment": ("name", "description", "private", "config"),
    "transfer": ("dataset", "model", "seeds", "steps", "data_root"),
}
QUERY_FIELDS: dict[str, tuple[str, ...]] = {
    "experiments": ("scope", "limit"),
    "leaderboard": ("method", "dataset", "model", "metric", "sort", "ranks", "limit"),
}

FORMATS = ("torch", "torchscript", "latex", "json")


class Client:
    """An lfl server at `url` (its root, e.g. "http://127.0.0.1:8000", or its /api/), used with `token`
    (`manage.py create_api_token <user>`)."""

    def __init__(self, url: str, token: str, timeout: float = 30.0):
        base = url.rstrip("/")
        self.api = base if base.endswith("/api") else base + "/api"
        self.token, self.timeout = token, timeout

    # --- experiments -------------------------------------------------------------------------
    def experiments(self, scope: str = "all", limit: int = 100) -> list[Experiment]:
        """The experiments this token's user may see, newest first (scope "mine": only theirs)."""
        answer = self._call("experiments", query={"scope": scope, "limit": limit})
        return [from_dict(Experiment, e) for e in answer["experiments"]]

    def create_experiment(self, name: str, config: dict | str | Path | None = None, *, preset: str | None = None,
                          description: str = "", private: bool = False) -> Experiment:
        """Start an experiment from `config` (a dict, or a path to a JSON file), from a server preset
        (`presets()`), or from a preset with `config`'s sections laid over it. A bad configuration
        raises `InvalidRequest` naming each field."""
        if isinstance(config, (str, Path)):
            config = json.loads(Path(config).read_text())
        if preset is not None:
            config = _overlay(self.preset(preset), config or {})
        if config is None:
            raise ValueError("give a configuration, a preset, or both")
        body = {"name": name, "description": description, "private": private, "config": config}
        return from_dict(Experiment, self._call("create_experiment", body=body))

    def experiment(self, experiment_id: int) -> ExperimentDetail:
        """The experiment with every generation's summary and its learned losses."""
        return ExperimentDetail.from_answer(self._call("experiment", pk=experiment_id))

    def hall_of_fame(self, experiment_id: int) -> list[LearnedLoss]:
        """The experiment's learned losses, best first (the first is its learned loss)."""
        return self.experiment(experiment_id).learned_losses

    def cancel(self, experiment_id: int) -> Experiment:
        """Ask the search (or the meta-test after it) to stop; `Conflict` once both are over."""
        return from_dict(Experiment, self._call("cancel", pk=experiment_id))

    def wait(self, experiment_id: int, *, timeout: float | None = None, poll: float = 2.0,
             progress: bool = True) -> ExperimentDetail:
        """Poll until the search and its meta-test are over; a progress bar of generations on stderr
        (tqdm when installed). Raises `Timeout` after `timeout` seconds (None: no limit)."""
        def shown(current: ExperimentDetail) -> tuple[int, int, str]:
            stage = current.status if current.meta_test_status != "running" else "meta-test"
            return current.current_generation, current.total_generations, stage

        return _poll(f"experiment {experiment_id}", lambda: self.experiment(experiment_id), shown,
                     timeout=timeout, poll=poll, progress=progress)

    # --- results -----------------------------------------------------------------------------
    def leaderboard(self, *, method: str = "", dataset: str = "", model: str = "", metric: str = "",
                    sort: str = "", every_rank: bool = False, limit: int = 100) -> list[LeaderboardEntry]:
        """The team's learned losses, each experiment's best (every_rank: all of them), ranked as the page ranks."""
        query = {"method": method, "dataset": dataset, "model": model, "metric": metric, "sort": sort,
                 "ranks": "all" if every_rank else "", "limit": limit}
        answer = self._call("leaderboard", query={k: v for k, v in query.items() if v not in ("", None)})
        return [from_dict(LeaderboardEntry, e) for e in answer["losses"]]

    def download(self, loss_id: int, fmt: str = "torch", to: str | Path | None = None) -> bytes | Path:
        """A learned loss as a file (torch module source, TorchScript archive, LaTeX or JSON): its bytes,
        or written to `to` (a file, or a folder to keep the server's file name in) and its path."""
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
        body, headers = self._call("download", pk=loss_id, fmt=fmt, raw=True)
        if to is None:
            return body
        path = Path(to)
        if path.is_dir():
            path = path / _filename(headers.get("Content-Disposition", ""), f"learned_loss_{loss_id}.{fmt}")
        path.write_bytes(body)
        return path

    def presets(self) -> dict[str, dict]:
        """The server's presets: key -> {"label", "config"} (the configurations its form starts from)."""
        return {p["key"]: p for p in self._call("presets")["presets"]}

    def preset(self, key: str) -> dict:
        """A preset's whole configuration; `NotFound` naming the known ones otherwise."""
        found = self.presets()
        if key not in found:
            raise LflError(404, f"no preset {key!r}; known: {', '.join(found) or '(none)'}")
        return found[key]["config"]

    # --- transfers ---------------------------------------------------------------------------
    def transfer(self, loss_id: int, dataset: str, model: str, *, seeds: int | None = None, steps: int | None = None,
                 data_root: str | None = None) -> Transfer:
        """Meta-test a learned loss on another task (in a worker); follow it with `wait_transfer`."""
        body = {"dataset": dataset, "model": model, "seeds": seeds, "steps": steps, "data_root": data_root}
        answer = self._call("transfer", pk=loss_id, body={k: v for k, v in body.items() if v is not None})
        return self.get_transfer(answer["id"])

    def transfers(self, loss_id: int) -> list[Transfer]:
        return [from_dict(Transfer, t) for t in self._call("transfers", pk=loss_id)["transfers"]]

    def get_transfer(self, transfer_id: int) -> Transfer:
        return from_dict(Transfer, self._call("get_transfer", pk=transfer_id))

    def wait_transfer(self, transfer_id: int, *, timeout: float | None = None, poll: float = 2.0,
                      progress: bool = True) -> Transfer:
        """Poll until the transfer has succeeded or failed (progress: seeds done)."""
        return _poll(f"transfer {transfer_id}", lambda: self.get_transfer(transfer_id),
                     lambda run: (run.seeds_done, run.seeds or 0, run.status),
                     timeout=timeout, poll=poll, progress=progress)

    # --- HTTP --------------------------------------------------------------------------------
    def _call(self, operation: str, *, query: dict | None = None, body: dict | None = None, raw: bool = False,
              **path_args: Any):
        method, template, _ = OPERATIONS[operation]
        undeclared = (set(body or {}) - set(BODY_FIELDS.get(operation, ()))) | (
            set(query or {}) - set(QUERY_FIELDS.get(operation, ())))
        if undeclared:  # BODY_FIELDS / QUERY_FIELDS are what the agreement with the OpenAPI document is checked on
            raise ValueError(f"{operation} sends undeclared fields: {', '.join(sorted(undeclared))}")
        url = self.api + template.format(**{k: urllib.parse.quote(str(v), safe="") for k, v in path_args.items()})
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers={
            "Authorization": f"Token {self.token}", "Accept": "application/json",
            **({"Content-Type": "application/json"} if data is not None else {})})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                content, headers = response.read(), response.headers
        except urllib.error.HTTPError as exc:
            content = exc.read()
            try:
                parsed = json.loads(content)
            except ValueError:
                parsed = content.decode(errors="replace")
            raise error_for(exc.code, parsed, exc.headers.get("Retry-After")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LflError(0, f"cannot reach the lfl server at {self.api}: {reason}") from None
        if raw:
            return content, headers
        return json.loads(content)


def _poll(label: str, fetch, shown, *, timeout: float | None, poll: float, progress: bool):
    """`fetch()` every `poll` seconds until its answer is `done`, showing `shown(answer)` (done, total,
    status) on a progress bar; `Timeout` naming `label` after `timeout` seconds (None: no limit)."""
    bar = _Progress(label) if progress else None
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            current = fetch()
            if bar:
                bar.show(*shown(current))
            if current.done:
                return current
            if deadline is not None and time.monotonic() >= deadline:
                raise Timeout(0, f"{label} is still {current.status} after {timeout} s")
            time.sleep(poll)
    finally:
        if bar:
            bar.close()


def _overlay(base: dict, over: dict) -> dict:
    """`base` with `over` laid on it, section by section (nested dicts merged, other values replaced)."""
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _overlay(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


def _filename(disposition: str, default: str) -> str:
    """The file name of a Content-Disposition header (RFC 6266's filename*= or filename=), else `default`."""
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename*" and "''" in value:
            return Path(urllib.parse.unquote(value.split("''", 1)[1])).name or default
    for part in disposition.split(";"):
        key, _, value = part.strip().partition("=")
        if key.lower() == "filename":
            return Path(value.strip('"')).name or default
    return default


class _Progress:
    """A bar of done / total on stderr: tqdm when installed, else one rewritten line."""

    def __init__(self, label: str):
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self.bar = tqdm(desc=label, total=0, file=sys.stderr, leave=True) if tqdm else None
        self.label, self.last = label, None

    def show(self, done: int, total: int, status: str) -> None:
        if self.bar is not None:
            if total and self.bar.total != total:
                self.bar.total = total
            self.bar.n = done
            self.bar.set_postfix_str(status, refresh=False)
            self.bar.refresh()
        elif (done, total, status) != self.last:
            sys.stderr.write(f"\r{self.label}: {done}/{total or '?'} {status}   ")
            sys.stderr.flush()
        self.last = (done, total, status)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.last is not None:
            sys.stderr.write("\n")
