"""The SQL versioning rule, made mechanical: released revisions are locked by hash.

``sql/revisions/released.lock`` lists, for every revision, each file its
upgrade and downgrade apply (as :class:`rerankdb.migrate.RevisionSql` steps)
with the SHA-256 of its content.  :func:`problems` replays every revision
offline (no database), records what each applies, and compares: a locked
file that changed, a step a revision gained or lost, a revision nobody
locked, or a frozen copy that no revision applies is a problem, and
``tests/test_sql_versioning.py`` fails on any.

``python -m rerankdb.sqllock`` locks the revisions that are not locked yet
(a new revision, once its SQL is reviewed).  ``--relock-head`` locks the
newest revision again: only for a revision that has not been released
(merged to main) yet.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from alembic.script import ScriptDirectory

from rerankdb import migrate, sqlfiles
from rerankdb.migrate import Applied

LOCK_FILE = "revisions/released.lock"
HEADER = """\
# What each released rerankdb revision applies, locked by SHA-256:
#   <revision> <kind> <name> <sha256>
# Written by `python -m rerankdb.sqllock`; checked by tests/test_sql_versioning.py.
# A released revision is frozen: never edit a line, add a revision instead.
"""

Key = tuple[str, str, str]  # (revision, kind, name)


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


def record() -> dict[Key, Applied]:
    """What every revision's upgrade and downgrade apply, from offline runs."""
    with migrate.recording() as applied:
        migrate.upgrade_sql(dim=migrate_dim())
        migrate.downgrade_sql()
    return {(a.owner, a.kind, a.name): a for a in applied}


def migrate_dim() -> int:
    return 384  # any valid dimension: no SQL file depends on it


def read_lock() -> dict[Key, str]:
    path = sqlfiles.sql_dir() / LOCK_FILE
    if not path.is_file():
        return {}
    out: dict[Key, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            revision, kind, name, digest = line.split()
            out[(revision, kind, name)] = digest
    return out


def write_lock(entries: dict[Key, str]) -> None:
    order = {r: i for i, r in enumerate(revisions())}
    lines = [
        f"{r} {k} {n} {h}"
        for (r, k, n), h in sorted(entries.items(), key=lambda e: (order.get(e[0][0], 1 << 30), e[0]))
    ]
    (sqlfiles.sql_dir() / LOCK_FILE).write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")


def problems() -> list[str]:
    """Every way the SQL tree breaks the versioning rule; empty when it keeps it."""
    root = sqlfiles.sql_dir()
    locked = read_lock()
    recorded = record()
    out: list[str] = []
    locked_revisions = {r for r, _, _ in locked}
    for key, digest in sorted(locked.items()):
        revision, kind, name = key
        now = recorded.get(key)
        if now is None:
            out.append(
                f"revision {revision} was released applying {kind} {name!r} and no longer does: "
                "released revisions are frozen"
            )
        elif now.sha256 != digest:
            hint = (
                f"copy the released version back with `git show <released commit>:sql/{now.path} > "
                f"sql/revisions/{revision}/functions/{name}.sql`, then change sql/functions/{name}.sql "
                "in a new revision"
                if kind == "function"
                else "put the change in a new revision"
            )
            out.append(
                f"sql/{now.path} changed, but revision {revision} was released applying it "
                f"(locked sha256 {digest[:12]}, now {now.sha256[:12]}): {hint}"
            )
    for key, a in sorted(recorded.items()):
        if a.owner in locked_revisions and key not in locked:
            out.append(f"revision {a.owner} now applies {a.kind} {a.name!r} (sql/{a.path}), which it did not")
    for revision in revisions():
        if revision not in locked_revisions:
            out.append(
                f"revision {revision} is not locked: review its SQL, then run `python -m rerankdb.sqllock`"
            )
    used = {a.path for a in recorded.values()}
    for path in sorted((root / "revisions").rglob("*.sql")):
        relative = path.relative_to(root).as_posix()
        if relative not in used:
            out.append(f"sql/{relative} is applied by no revision: remove it, or apply it from one")
    return out


def lock(*, relock_head: bool = False) -> list[str]:
    """Add the unlocked revisions to the lock (and the head again if asked); what was locked."""
    locked = read_lock()
    recorded = record()
    all_revisions = revisions()
    targets = {r for r in all_revisions if r not in {k[0] for k in locked}}
    if relock_head:
        targets.add(all_revisions[-1])
        locked = {k: v for k, v in locked.items() if k[0] != all_revisions[-1]}
    for key, a in recorded.items():
        if a.owner in targets:
            locked[key] = a.sha256
    write_lock(locked)
    return sorted(targets, key=all_revisions.index)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rerankdb.sqllock", description=__doc__.split("\n\n")[0])
    p.add_argument("--relock-head", action="store_true", help="lock the newest (unreleased) revision again")
    p.add_argument("--check", action="store_true", help="only report problems (exit 1 if any)")
    args = p.parse_args(argv)
    if not args.check:
        done = lock(relock_head=args.relock_head)
        print(f"locked: {', '.join(done) if done else 'nothing new'}")
    found = problems()
    for line in found:
        print(f"rerankdb.sqllock: {line}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
