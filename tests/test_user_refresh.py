"""User refresh against a real database: the fold, exactly-once, races, a killed worker."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rerankdb import db, partitions, user_refresh
from tests.worker_helpers import (
    CONTEXT_WEIGHT,
    DIM,
    T0,
    add_interactions,
    add_items,
    assert_matches_rebuild,
    drain,
    state_counts,
    status,
    user_vectors,
)


def test_user_vector_is_the_decayed_weighted_sum(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    day = timedelta(days=1)
    add_interactions(
        conn,
        [
            (7, 1, "view", None, None, T0),
            (7, 2, "purchase", None, None, T0 + 30 * day),  # one half-life later
            (7, 3, "dislike", None, None, T0 + 30 * day),
            (7, 4, "view", 4.0, "love on a train", T0 + 15 * day),
        ],
    )
    report = drain(conn, encoder)
    assert report.interactions_folded == 4
    ctx = encoder.encode(["love on a train"])[0]
    want = (
        1.0 * 0.5 * catalog[1]
        + 3.0 * catalog[2]
        - 1.0 * catalog[3]
        + 4.0 * 2**-0.5 * (catalog[4] + 0.5 * ctx)
    )
    got = user_vectors(conn)[7]
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-6)
    assert state_counts(conn) == {7: 4}
    # and rerank now personalizes with it (the long-term vector alone: the
    # short-term blend is tested in test_short_term.py)
    conn.execute("update rerankdb.settings set short_weight = 0")
    ranked = conn.execute("select item_id from rerankdb.rerank(7, array[3, 6, 2, 5])").fetchall()
    assert [r[0] for r in ranked] == sorted([3, 6, 2, 5], key=lambda i: -float(got @ catalog[i]))
    assert ranked[0][0] == 2


def test_incremental_equals_rebuild(conn: Any, encoder: Any, catalog: dict[int, np.ndarray]) -> None:
    rng = np.random.default_rng(3)
    kinds = ["view", "click", "like", "purchase", "skip", "dislike"]
    for _ in range(5):  # five arrivals, each folded incrementally
        rows = [
            (
                int(rng.integers(1, 6)),
                int(rng.integers(1, 7)),
                str(rng.choice(kinds)),
                None if rng.random() < 0.7 else float(rng.uniform(-2, 5)),
                None if rng.random() < 0.8 else str(rng.choice(["space", "love", "casino"])),
                T0 + timedelta(hours=float(rng.uniform(0, 2000))),
            )
            for _ in range(40)
        ]
        add_interactions(conn, rows)
        drain(conn, encoder)
    assert sum(state_counts(conn).values()) == 200
    assert_matches_rebuild(conn, encoder)


def test_no_decay_setting(conn: Any, encoder: Any, catalog: dict[int, np.ndarray]) -> None:
    conn.execute("update rerankdb.settings set half_life = null")
    add_interactions(
        conn, [(1, 1, "view", None, None, T0 - timedelta(days=900)), (1, 2, "view", None, None, T0)]
    )
    drain(conn, encoder, 0.0)
    want = catalog[1] + catalog[2]
    np.testing.assert_allclose(user_vectors(conn)[1], want / np.linalg.norm(want), atol=1e-6)


def test_cancelled_user_has_no_vector(conn: Any, encoder: Any, catalog: dict[int, np.ndarray]) -> None:
    add_interactions(conn, [(1, 1, "like", None, None, T0), (1, 1, "like", -2.0, None, T0)])
    drain(conn, encoder)
    assert 1 not in user_vectors(conn)
    assert conn.execute("select * from rerankdb.rerank(1, array[2, 1])").fetchall() == [
        (2, None, 1),
        (1, None, 2),
    ]


def test_interaction_before_its_item_is_deferred_then_counted(conn: Any, encoder: Any, catalog: Any) -> None:
    add_interactions(conn, [(9, 100, "like", None, None, T0), (9, 1, "view", None, None, T0)])
    report = drain(conn, encoder)
    assert (report.interactions_folded, report.interactions_deferred) == (1, 1)
    assert status(conn)["deferred_interactions"] == 1
    add_items(conn, {100: "Wizards attend a school of magic"})
    report = drain(conn, encoder)
    assert (report.items_embedded, report.interactions_folded) == (1, 1)
    assert state_counts(conn) == {9: 2}
    assert status(conn)["deferred_interactions"] == 0
    assert_matches_rebuild(conn, encoder)


def test_out_of_order_commits_are_neither_missed_nor_doubled(
    db_url: str, conn: Any, encoder: Any, catalog: Any
) -> None:
    with db.connect(db_url) as slow:  # a transaction that takes the lower id but commits last
        add_interactions(slow, [(5, 1, "view", None, None, T0)])
        add_interactions(conn, [(5, 2, "view", None, None, T0)])  # higher id, committed first
        assert drain(conn, encoder).interactions_folded == 1
        slow.commit()
    assert drain(conn, encoder).interactions_folded == 1
    assert drain(conn, encoder).interactions_folded == 0
    assert state_counts(conn) == {5: 2}
    assert_matches_rebuild(conn, encoder)


def test_two_workers_at_once_count_everything_once(
    db_url: str, conn: Any, encoder: Any, catalog: Any
) -> None:
    rng = np.random.default_rng(5)
    stop = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        with db.connect(db_url, autocommit=True) as c:
            while not stop.is_set():
                try:
                    user_refresh.refresh_users(c, encoder, CONTEXT_WEIGHT, DIM, limit=7)
                except BaseException as exc:  # surfaced below
                    errors.append(exc)
                    return

    workers = [threading.Thread(target=work) for _ in range(2)]
    for w in workers:
        w.start()
    for _ in range(30):  # inserts racing the two workers
        add_interactions(
            conn,
            [(int(rng.integers(1, 4)), int(rng.integers(1, 7)), "click", None, None, T0) for _ in range(10)],
        )
    time.sleep(0.5)
    stop.set()
    for w in workers:
        w.join()
    assert not errors, errors
    drain(conn, encoder)
    assert sum(state_counts(conn).values()) == 300
    assert_matches_rebuild(conn, encoder)


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rerankdb import db, user_refresh

    def hang():
        Path(sys.argv[2]).write_text("in batch")
        time.sleep(600)

    with db.connect(sys.argv[1], autocommit=True) as conn:
        user_refresh.refresh_users(
            conn, None, 0.5, 384, before_commit=hang
        )
    """
)


def test_worker_killed_mid_batch_loses_and_doubles_nothing(
    db_url: str, conn: Any, encoder: Any, catalog: Any, tmp_path: Path
) -> None:
    add_interactions(conn, [(u, i, "like", None, None, T0) for u in (1, 2) for i in (1, 2, 3)])
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, db_url, str(marker)])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the worker never reached its batch"
            time.sleep(0.05)
        # Its batch is computed and written, not committed: the rows stay claimed.
        assert user_refresh.refresh_users(conn, None, CONTEXT_WEIGHT, DIM).folded == 0
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    deadline = time.monotonic() + 30
    folded = 0
    while folded == 0 and time.monotonic() < deadline:  # until the server notices the dead session
        folded = drain(conn, encoder).interactions_folded
        time.sleep(0.1)
    assert folded == 6
    assert state_counts(conn) == {1: 3, 2: 3}
    assert_matches_rebuild(conn, encoder)


def test_rebuild_requeues_interactions_whose_item_lost_its_vector(
    conn: Any, encoder: Any, catalog: Any
) -> None:
    add_interactions(conn, [(1, 1, "like", None, None, T0), (1, 2, "like", None, None, T0)])
    drain(conn, encoder)
    conn.execute("delete from rerankdb.item_vectors where item_id = 2")
    assert user_refresh.rebuild_users(conn, encoder, CONTEXT_WEIGHT, DIM, [1]) == 1
    assert status(conn)["deferred_interactions"] == 1
    conn.execute("update rerankdb.items set content = content || '!' where item_id = 2")
    drain(conn, encoder)
    assert state_counts(conn) == {1: 2}
    assert_matches_rebuild(conn, encoder)


def test_a_fold_skips_the_partitions_of_users_another_fold_holds(
    conn: Any, db_url: str, encoder: Any, catalog: dict[int, np.ndarray]
) -> None:
    """Two workers never wait for each other: the users of a partition another fold holds
    stay queued for it, the others are folded; nothing is lost once it lets go."""
    add_interactions(conn, [(u, 1 + u % 6, "view", None, None, T0) for u in range(1, 41)])
    hashed = dict(conn.execute("select u, hashint8(u) from generate_series(1, 40) u").fetchall())
    part_of = {u: partitions.ONE_NODE.index(h) for u, h in hashed.items()}
    held = part_of[7]
    with db.connect(db_url) as other:  # another worker's fold transaction, on user 7's partition
        other.execute(
            "select pg_advisory_xact_lock('rerankdb.interaction_queue'::regclass::oid::integer, %s)", [held]
        )
        batch = user_refresh.refresh_users(conn, encoder, CONTEXT_WEIGHT, DIM)
        waiting = {u for u, p in part_of.items() if p == held}
        assert batch.folded == 40 - len(waiting)
        assert set(state_counts(conn)) == set(part_of) - waiting
        other.rollback()
    assert user_refresh.refresh_users(conn, encoder, CONTEXT_WEIGHT, DIM).folded == len(waiting)
    assert state_counts(conn) == dict.fromkeys(range(1, 41), 1)
    assert_matches_rebuild(conn, encoder)


def test_a_rebuild_of_every_user_logs_its_start_progress_and_end(
    conn: Any, encoder: Any, catalog: dict[int, np.ndarray], caplog: Any, monkeypatch: Any
) -> None:
    """A half-life change rebuilds every user inside the worker's drain: minutes on a large
    log, so it says when it starts, how far it got (at most every PROGRESS_SECONDS), and when done."""
    add_interactions(conn, [(u, 1 + u % 6, "view", None, None, T0) for u in range(1, 6)])
    drain(conn, encoder)
    monkeypatch.setattr(user_refresh, "PROGRESS_SECONDS", 0.0)
    conn.execute("update rerankdb.settings set half_life = interval '7 days'")
    caplog.set_level("INFO", logger="rerankdb.user_refresh")
    monkeypatch.setattr(user_refresh, "rebuild_all_in_transaction", rebuild_in_batches_of_two)
    drain(conn, encoder)
    said = [r.getMessage() for r in caplog.records if r.name == "rerankdb.user_refresh"]
    assert said[0] == "half-lives changed: rebuilding every user (5 users)"
    for line, n in zip(said[1:3], (2, 4), strict=True):  # then the time taken so far
        assert line.startswith(f"half-lives changed: {n} of 5 users rebuilt ({100 * n // 5}%, "), line
    assert said[3].startswith("half-lives changed: rebuilt 5 of 5 users from 5 interactions in ")
    caplog.clear()
    user_refresh.rebuild_all(conn, encoder, CONTEXT_WEIGHT, DIM, batch_users=3)
    said = [r.getMessage() for r in caplog.records if r.name == "rerankdb.user_refresh"]
    assert said[0] == "rebuild: rebuilding every user (5 users)"
    assert said[1].startswith("rebuild: 3 of 5 users rebuilt (60%, ")
    assert said[2].startswith("rebuild: rebuilt 5 of 5 users from 5 interactions in ")


_rebuild_all_in_transaction = user_refresh.rebuild_all_in_transaction


def rebuild_in_batches_of_two(*args: Any, **kwargs: Any) -> int:
    return _rebuild_all_in_transaction(*args, **kwargs, batch_users=2)


# --- the queue follows its log (revision 0016: triggers, no foreign key) ---------------


def _queued(conn: Any) -> set[tuple[int, int, int]]:
    rows = conn.execute("select interaction_id, user_id, item_id from rerankdb.interaction_queue")
    return set(rows.fetchall())


def _log(conn: Any) -> dict[int, tuple[int, int]]:
    rows = conn.execute("select interaction_id, user_id, item_id from rerankdb.interactions").fetchall()
    return {i: (u, item) for i, u, item in rows}


def test_a_deleted_row_leaves_the_queue_in_one_statement(conn: Any, catalog: Any) -> None:
    add_interactions(conn, [(u, i, "view", None, None, T0) for u in (1, 2, 3) for i in (1, 2, 3)])
    log = _log(conn)
    gone = [i for i, (u, item) in log.items() if u == 2 or item == 3]
    conn.execute("delete from rerankdb.interactions where interaction_id = any(%s)", (gone,))
    assert _queued(conn) == {(i, u, item) for i, (u, item) in log.items() if i not in gone}
    # the rest folds as it would have, and equals a rebuild from the log
    drain(conn, None, 0.0)
    assert state_counts(conn) == {1: 2, 3: 2}
    assert_matches_rebuild(conn, None, 0.0)


def test_a_truncated_log_empties_the_queue(conn: Any, catalog: Any) -> None:
    add_interactions(conn, [(1, 1, "view", None, None, T0), (2, 2, "like", None, None, T0)])
    conn.execute("truncate rerankdb.interactions")  # no CASCADE needed: no foreign key
    assert _queued(conn) == set()
    assert status(conn)["pending_interactions"] == 0


def test_a_queued_row_follows_an_update_of_its_user_and_item(conn: Any, catalog: Any) -> None:
    add_interactions(conn, [(1, 1, "view", None, None, T0), (1, 2, "view", None, None, T0)])
    first = min(_log(conn))
    conn.execute(
        "update rerankdb.interactions set user_id = 9, item_id = 4 where interaction_id = %s", (first,)
    )
    assert _queued(conn) == {(first, 9, 4), (first + 1, 1, 2)}
    drain(conn, None, 0.0)
    assert state_counts(conn) == {1: 1, 9: 1}
    np.testing.assert_allclose(user_vectors(conn)[9], catalog[4] / np.linalg.norm(catalog[4]), atol=1e-6)
    assert_matches_rebuild(conn, None, 0.0)


def test_a_rebuild_drops_queue_rows_whose_log_row_is_gone(conn: Any, catalog: Any) -> None:
    # What a rebuild racing a delete may leave: a queue row read from its snapshot,
    # queued again after the delete committed (nothing would ever claim it).
    add_interactions(conn, [(5, 1, "view", None, None, T0), (6, 2, "view", None, None, T0)])
    drain(conn, None, 0.0)
    conn.execute(
        "insert into rerankdb.interaction_queue (interaction_id, item_id, user_id, deferred)"
        " values (999999, 1, 5, true), (999998, 2, 6, false)"
    )
    assert status(conn)["pending_interactions"] == 1  # the other is deferred
    user_refresh.rebuild_users(conn, None, 0.0, DIM, [5])
    assert _queued(conn) == {(999998, 6, 2)}  # user 6 was not rebuilt
    user_refresh.rebuild_users(conn, None, 0.0, DIM, [6])
    assert _queued(conn) == set()
    assert state_counts(conn) == {5: 1, 6: 1}
