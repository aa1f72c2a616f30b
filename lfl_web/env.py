"""Reading settings from the environment, and the development secret key kept under var/."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

TRUE_WORDS = {"1", "true", "yes", "on"}
FALSE_WORDS = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    """`1/true/yes/on` or `0/false/no/off` (any case); anything else is a configuration error."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{name} must be one of 1/0, true/false, yes/no, on/off; got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    """A comma-separated list; blanks are dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


def development_secret_key(var_dir: Path) -> str:
    """The key stored in `var_dir/secret_key`, created (readable by its owner only) on first use.

    Production sets LFL_SECRET_KEY instead; no secret is ever written in the code.
    """
    path = var_dir / "secret_key"
    if not path.exists():
        var_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=var_dir, prefix=".secret_key.")  # created with mode 0600
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(tmp, path)  # atomic; another process may have won the race, then its key stands
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return path.read_text().strip()
