"""`python manage.py coordinate`: sweep fanned-out searches every LFL_SWEEP_SECONDS until stopped.

The stack (`runstack`) starts one; on other machines run it next to the database (one is enough,
more are harmless). See lfl_web.experiments.fanout.coordinator for what a sweep does.
"""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from lfl_web.experiments.fanout import coordinator
from lfl_web.stack.supervisor import StopOnSignals


class Command(BaseCommand):
    help = "Keep fanned-out searches moving through lost workers and a lost broker (until Ctrl-C)."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=settings.LFL_SWEEP_SECONDS,
                            help="seconds between two sweeps (default LFL_SWEEP_SECONDS)")
        parser.add_argument("--once", action="store_true", help="sweep once and exit")

    def handle(self, *args, interval: float, once: bool, **options):
        if interval <= 0:
            self.stderr.write(f"--interval must be more than 0, got {interval:g}")
            raise SystemExit(2)
        first = True
        with StopOnSignals() as stop:
            while True:
                close_old_connections()
                try:
                    report = coordinator.sweep()
                except Exception as exc:  # the database or broker is away: try again next time
                    self.stderr.write(f"sweep failed: {type(exc).__name__}: {exc}")
                else:
                    said = report.describe(first_sweep=first)
                    if said:
                        self.stdout.write(f"coordinator: {said}")
                    first = False
                if once or stop.wait(interval):
                    return
