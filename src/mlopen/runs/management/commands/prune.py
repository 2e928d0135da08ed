"""`mlopen manage prune [--dry-run]`: delete the finished runs past their retention (and, with
--orphans, stored files no row refers to), and say what that freed."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from mlopen.runs import retention, storage_report


class Command(BaseCommand):
    help = (
        "Delete finished runs older than MLOPEN_RETENTION_DAYS (or their pipeline's retention_days) with their "
        "results, logs and the models only they trained; runs tagged keep, shared runs and models in use stay."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="say what would be deleted; change nothing")
        parser.add_argument(
            "--orphans", action="store_true", help="also delete stored files that no row refers to (storage page)"
        )

    def handle(self, *args, dry_run: bool = False, orphans: bool = False, **options):
        pruned = retention.prune(dry_run=dry_run)
        self.stdout.write(pruned.describe())
        if pruned.run_ids and options.get("verbosity", 1) > 1:
            self.stdout.write("Runs: " + ", ".join(str(pk) for pk in pruned.run_ids))
        if orphans:
            removed = storage_report.remove_orphans(dry_run=dry_run)
            self.stdout.write(removed.describe())
