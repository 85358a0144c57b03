"""rerankdb tune: its scores are rerank's, it finds the signal a log has, it writes (or not)
what it chose, and refuses what it cannot do."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from rerankdb import Client, metrics, tune
from rerankdb.drain import drain
from rerankdb.errors import InvalidInputError
from rerankdb.train import train
from tests.helpers import load_items
from tests.worker_helpers import T0

DIM = 384
CLUSTERS = 6
SMALL = tune.Grid(
    half_lives=(None, 30 * tune.DAY),
    short_half_lives=(60.0, tune.DAY),
    short_weights=(0.0, 0.5, 0.9),
    collab_short_weights=(0.0, 0.5),
    collab_weights=(0.0, 0.5),
    collab_shrinks=(0.0,),
    text_centerings=(0.0, 1.0),
    collab_centerings=(0.0,),
    collab_dims=(8, 4),
)


@pytest.fixture
def sessions(conn: Any, client: Client, rng: np.random.Generator) -> dict[str, Any]:
    """120 items in 6 topics; 60 users, each with sessions of one topic a day apart.  The
    newest session's topic is random, so what a user did last says what comes next."""
    centers = rng.standard_normal((CLUSTERS, DIM))
    topic = np.repeat(np.arange(CLUSTERS), 20)
    load_items(client, centers[topic] + 0.6 * rng.standard_normal((len(topic), DIM)))
    rows = []
    for u in range(1, 61):
        t = T0
        for _ in range(4):
            c = int(rng.integers(CLUSTERS))
            for i in rng.choice(np.flatnonzero(topic == c), 3, replace=False):
                rows.append((u, int(i) + 1, t))
                t += timedelta(seconds=30)
            t += timedelta(days=1)
    with conn.cursor() as cur:
        cur.executemany(
            "insert into rerankdb.interactions (user_id, item_id, occurred_at) values (%s, %s, %s)", rows
        )
    drain(conn, None, 0.0, DIM)
    conn.execute("update rerankdb.settings set collab_dim = 8")  # the tuner learns what train would
    train(conn, None, 0.0, DIM)
    conn.execute("update rerankdb.settings set short_weight = 0, collab_short_weight = 0")  # 0005's scores
    return {"rows": rows}


def sql_ndcg(
    conn: Any,
    lists: np.ndarray,
    targets: np.ndarray,
    users: np.ndarray,
    context: list[list[int]] | None = None,
) -> np.ndarray:
    out = []
    for j, (user, cands, target) in enumerate(zip(users.tolist(), lists, targets.tolist(), strict=True)):
        ctx = None if context is None else context[j]
        ranked = [
            r[0]
            for r in conn.execute(
                "select item_id from rerankdb.rerank(%s, %s, context_items => %s)",
                [user, cands.tolist(), ctx],
            )
        ]
        out.append(metrics.ndcg_at(metrics.target_rank(ranked, target)))
    return np.array(out)


def test_the_tuners_scores_are_reranks(conn: Any, sessions: Any) -> None:
    """Tuner's NDCG of the current settings = rerank's on a database holding only the history."""
    conn.execute(
        "update rerankdb.settings set short_weight = 0.4, collab_short_weight = 0.3, collab_weight = 0.5,"
        " collab_shrink = 2, collab_centering = 0.5, short_half_life = '2 minutes'"
    )
    fitted, current, trained, _ = tune.fit(conn, max_users=1000, seed=3)
    assert trained and len(fitted.holdout.users) == 60
    ((_, want),) = tune.score_settings(fitted, current, trained)
    h = fitted.holdout
    targets = {n: h.lists[n][np.arange(len(h.users)), h.target_pos[n]] for n in tune.LISTS}
    # The database as the tuner saw it: every held-out interaction deleted, users rebuilt, retrained.
    conn.execute(
        "delete from rerankdb.interactions i where i.interaction_id in ("
        " select distinct on (user_id) interaction_id from rerankdb.interactions"
        " order by user_id, occurred_at desc, interaction_id desc)"
    )
    drain(conn, None, 0.0, DIM)
    train(conn, None, 0.0, DIM)
    for name in tune.LISTS:
        got = sql_ndcg(conn, h.lists[name], targets[name], h.users)
        same = np.isclose(got, want[name], atol=1e-9)
        assert same.mean() >= 0.95, (name, same.mean())
        assert abs(got.mean() - want[name].mean()) < 0.01
    # The context sweep: each user's newest history items as context_items, mixed in.
    sweep = tune.context_sweep(fitted, current, trained, weights=(0.0, 0.4))
    for name in tune.LISTS:
        np.testing.assert_array_equal(sweep[0.0][name], want[name])  # weight 0: the plain scores
    conn.execute("update rerankdb.settings set context_items_weight = 0.4")
    context = []
    for u in range(len(h.users)):
        rows = np.flatnonzero(h.user_idx == u)
        newest = rows[np.lexsort((-rows, -h.times[rows]))][: tune.CONTEXT_ITEMS]
        context.append(h.items[newest].tolist())
    for name in tune.LISTS:
        got = sql_ndcg(conn, h.lists[name], targets[name], h.users, context)
        same = np.isclose(got, sweep[0.4][name], atol=1e-9)
        assert same.mean() >= 0.95, (name, same.mean())
        assert not np.array_equal(got, want[name]), "the context changed some rankings"


def test_tune_finds_the_short_term_signal_and_writes_it(conn: Any, sessions: Any) -> None:
    report = tune.tune(conn, grid=SMALL, dim=DIM, seed=1)
    assert report.chosen.short_weight > 0 or report.chosen.collab_short_weight > 0
    assert report.chosen_ndcg["uniform"].mean > report.current_ndcg["uniform"].mean + 0.1
    assert report.chosen.short_half_life == 60.0, "sessions are seconds apart, a day between them"
    assert report.written and report.rebuilt and not report.rebuild_pending
    row = conn.execute(
        "select extract(epoch from short_half_life), short_weight, collab_short_weight, tuned_at is not null,"
        " tune_report->>'objective' from rerankdb.settings"
    ).fetchone()
    assert row == (
        60,
        pytest.approx(report.chosen.short_weight),
        pytest.approx(report.chosen.collab_short_weight),
        True,
        "mean",
    )
    state = conn.execute(
        "select extract(epoch from states_short_half_life) from rerankdb.worker_state"
    ).fetchone()
    assert state == (60,), "every user was rebuilt with the new half-life"
    assert not drain(conn, None, 0.0, DIM).half_lives_changed, "nothing left for the worker"


def test_dry_run_writes_nothing(conn: Any, sessions: Any) -> None:
    before = conn.execute("select * from rerankdb.settings").fetchone()
    report = tune.tune(conn, grid=SMALL, dim=DIM, dry_run=True)
    assert not report.written and report.chosen != report.current
    assert conn.execute("select * from rerankdb.settings").fetchone() == before


def test_objective_picks_from_the_same_grid(conn: Any, sessions: Any) -> None:
    report = tune.tune(conn, grid=SMALL, objective="popular", dry_run=True, dim=DIM)
    assert {t.settings.collab_dim for t in report.trials} == {8, 4}, "both dimensions tried"
    assert report.chosen == report.best("popular").settings
    assert report.best("uniform").ndcg["uniform"] >= report.best("popular").ndcg["uniform"]
    assert len(report.trials) == len({t.settings for t in report.trials}), "each setting once"


def test_without_an_encoder_a_log_with_contexts_leaves_the_rebuild_to_the_worker(
    conn: Any, sessions: Any
) -> None:
    conn.execute("update rerankdb.interactions set context = 'on sale' where interaction_id % 7 = 0")
    report = tune.tune(conn, grid=SMALL, dim=DIM, seed=1)
    assert report.written and not report.rebuilt and report.rebuild_pending
    assert {t.settings.collab_dim for t in report.trials} == {8}, "no training without the encoder"
    assert drain(conn, None, 0.0, DIM).half_lives_changed


def test_bad_requests_are_refused(conn: Any, client: Client, sessions: Any) -> None:
    with pytest.raises(InvalidInputError, match="objective must be one of mean, uniform, popular"):
        tune.tune(conn, objective="best")
    with pytest.raises(InvalidInputError, match="max_users must be a positive integer"):
        client.tune(max_users=0)


def test_too_small_a_log_is_refused_clearly(conn: Any, client: Client, rng: np.random.Generator) -> None:
    load_items(client, rng.standard_normal((10, DIM)))
    with conn.cursor() as cur:
        cur.executemany(
            "insert into rerankdb.interactions (user_id, item_id, occurred_at) values (%s, %s, %s)",
            [(u, i, T0 + timedelta(minutes=i)) for u in range(1, 6) for i in (1, 2, 3)],
        )
    drain(conn, None, 0.0, DIM)
    with pytest.raises(InvalidInputError, match=r"at least 20 users .* the log has 5"):
        client.tune()


def test_client_and_cli(conn: Any, client: Client, db_url: str, sessions: Any) -> None:
    report = client.tune(dry_run=True, max_users=40)
    assert report.users == 40 and not report.written
    out = subprocess.run(
        [sys.executable, "-m", "rerankdb.cli", "tune", "--dry-run", "--no-encoder", "--max-users", "30"],
        env={"RERANKDB_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "Best blend for each pair of half-lives" in out.stdout and "| chosen |" in out.stdout
    assert "dry run: nothing written" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "rerankdb.cli", "tune", "--max-users", "0"],
        env={"RERANKDB_DATABASE_URL": db_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "must be a positive integer" in bad.stderr


def test_the_nightly_job_can_tune_after_training(
    db_url: str, conn: Any, sessions: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from rerankdb.config import Settings
    from rerankdb.worker import Worker

    plain = Worker(db_url, Settings(), None)
    assert dict((n, j) for n, _, j in plain.jobs())["train"] == plain.train, "off by default"
    worker = Worker(db_url, Settings(tune_after_train=True), None)
    job = dict((n, j) for n, _, j in worker.jobs())["train"]
    assert job == worker.train_then_tune
    caplog.set_level("INFO")
    worker._scheduled("train", job)
    assert "tuned:" in caplog.text and "scheduled train done" in caplog.text
    assert conn.execute("select tuned_at is not null from rerankdb.settings").fetchone() == (True,)
    built_for_these = (
        "select m.collab_weight = st.collab_weight and m.collab_shrink = st.collab_shrink"
        " and m.sequence_weight = st.sequence_weight and m.trained_at = st.trained_at"
        " from rerankdb.hybrid_meta m, rerankdb.settings st"
    )
    assert conn.execute(built_for_these).fetchone() == (True,), "recommend's hybrid index follows the tuning"
    # Weights written by the tuner: the hybrid index is rebuilt with them after the commit.
    current, _, _ = tune.current_settings(conn)
    tune.apply(conn, replace(current, collab_weight=0.25), encoder=None, context_weight=0.0, dim=DIM)
    assert conn.execute(built_for_these).fetchone() == (True,)
    assert conn.execute("select collab_weight from rerankdb.hybrid_meta").fetchone() == (0.25,)


def test_the_worker_role_can_tune(conn: Any, sessions: Any, login: Any) -> None:
    """What the scheduled job runs as: the worker role writes the settings, retrains or
    rebuilds, and nothing is refused."""
    from rerankdb.config import Settings
    from rerankdb.worker import Worker

    worker = Worker(login("rerankdb_worker"), Settings(), None)
    report = worker.tune(grid=SMALL, seed=1)
    assert report.written and (report.rebuilt or report.retrained)
    row = conn.execute(
        "select short_weight, collab_dim, tuned_at is not null from rerankdb.settings"
    ).fetchone()
    assert row == (pytest.approx(report.chosen.short_weight), report.chosen.collab_dim, True)


def test_the_app_role_may_not_tune(sessions: Any, login: Any) -> None:
    from rerankdb.errors import PermissionDeniedError

    with (
        Client(login("rerankdb_app")) as app,
        pytest.raises(PermissionDeniedError, match="owner or a member of rerankdb_worker"),
    ):
        app.tune(dry_run=True)
