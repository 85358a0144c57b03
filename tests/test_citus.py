"""rerankdb on a real Citus cluster (a coordinator and two workers on this machine).

The cluster is built from the Citus source and started once for this module
(tests/citus_helpers.py: skipped, with the reason, where there is no source;
CI requires it).  rerankdb is installed on it as a DBA does:
``rerankdb migrate --citus``.  Each test starts from empty tables.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from rerankdb import citus, db, partitions, user_refresh
from rerankdb.client import Client, Interaction
from rerankdb.drain import drain
from rerankdb.errors import RerankdbError
from tests import citus_helpers
from tests.conftest import logins
from tests.test_roles import denied
from tests.worker_helpers import T0, state_counts, user_vectors, wait_for

DIM = 384
N_ITEMS = 60
N_USERS = 40
KINDS = ("view", "click", "like", "purchase")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[citus.Cluster]:
    home = Path(tmp_path_factory.mktemp("citus"))
    started = citus_helpers.start(home)
    yield started
    citus.down(home, delete=True)


@pytest.fixture
def curl(cluster: citus.Cluster) -> str:
    """The coordinator's rerankdb, emptied."""
    citus_helpers.empty(cluster.url())
    return cluster.url()


@pytest.fixture
def cconn(curl: str) -> Iterator[psycopg.Connection[Any]]:
    with db.connect(curl, autocommit=True) as c:
        yield c


def write_world(url: str, rng: np.random.Generator) -> None:
    """Items with vectors and N_USERS users' histories (fixed times), folded."""
    vectors = rng.standard_normal((N_ITEMS, DIM))
    interactions = [
        Interaction(
            u,
            int(rng.integers(1, N_ITEMS + 1)),
            KINDS[int(rng.integers(0, len(KINDS)))],
            occurred_at=T0 + timedelta(minutes=int(rng.integers(0, 10_000))),
        )
        for u in range(1, N_USERS + 1)
        for _ in range(6)
    ]
    with Client(url) as client:
        client.upsert_items([{"item_id": i, "content": f"item {i}"} for i in range(1, N_ITEMS + 1)])
        client.set_item_vectors(list(range(1, N_ITEMS + 1)), vectors)
        client.record_interactions(interactions)
    with db.connect(url, autocommit=True) as conn:
        drain(conn, None, 0.0, DIM)


def node_of(conn: psycopg.Connection[Any], user: int) -> int:
    row = conn.execute(
        "select nodeport from pg_dist_shard_placement "
        "where shardid = get_shard_id_for_distribution_column('rerankdb.interactions', %s::bigint)",
        [user],
    ).fetchone()
    assert row is not None
    return int(row[0])


def rows(url: str, query: str, params: list[Any]) -> list[tuple[Any, ...]]:
    with psycopg.connect(db.libpq_url(url), autocommit=True) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


def same_rows(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    """Equal, floats to 1e-9 (the same arithmetic on another node)."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b, strict=True):
        for x, y in zip(ra, rb, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                if abs(x - y) > 1e-9:
                    return False
            elif x != y:
                return False
    return True


# --- installed as the layout says -----------------------------------------------------------


def test_migrate_citus_distributes_every_table_and_the_per_user_functions(cconn: Any) -> None:
    placed = dict(
        cconn.execute(
            "select table_name::text, citus_table_type from citus_tables where table_name::text like 'rerankdb.%'"
        ).fetchall()
    )
    user_tables = {
        "rerankdb.interactions",
        "rerankdb.interaction_queue",
        "rerankdb.user_state",
        "rerankdb.user_vectors",
        "rerankdb.user_rebuild_queue",
        "rerankdb.user_snapshot",
    }
    ours = {
        r[0]
        for r in cconn.execute(
            "select format('%I.%I', schemaname, tablename) from pg_tables where schemaname = 'rerankdb'"
        )
    }
    assert set(placed) == ours, "every table is placed"
    assert {t for t, kind in placed.items() if kind == "distributed"} == user_tables
    assert set(placed.values()) == {"distributed", "reference"}
    colocation = {
        r[0]
        for r in cconn.execute(
            "select colocation_id from citus_tables where citus_table_type = 'distributed'"
        )
    }
    assert len(colocation) == 1, "one user's rows of every table on one node"
    delegated = {
        r[0]
        for r in cconn.execute(
            "select p.proname from pg_dist_object o join pg_proc p on p.oid = o.objid "
            "where o.classid = 'pg_proc'::regclass and o.distribution_argument_index is not null"
        )
    }
    assert delegated == {"rerank", "rerank_scored", "recommend", "explain", "forget_user"}


def test_migrate_citus_again_changes_nothing(curl: str) -> None:
    before = rows(curl, "select table_name::text, shard_count from citus_tables order by 1", [])
    out = citus.apply_layout(curl)
    assert "rerankdb.interactions" in out
    assert rows(curl, "select table_name::text, shard_count from citus_tables order by 1", []) == before


def test_the_partitions_of_a_fold_are_the_shards(cconn: Any) -> None:
    """A user's partition (partitions.py) is the shard holding them: each fold's FOR UPDATE
    stays on one shard."""
    parts = partitions.of(cconn, fresh=True)
    assert parts.citus and len(parts.lower) == 8
    got = cconn.execute(
        "select u, hashint8(u), get_shard_id_for_distribution_column('rerankdb.interactions', u) "
        "from generate_series(1, 2000) u"
    ).fetchall()
    shard_of_part: dict[int, set[int]] = {}
    for _user, hashed, shard in got:
        shard_of_part.setdefault(parts.index(hashed), set()).add(shard)
    assert all(len(s) == 1 for s in shard_of_part.values())
    assert len({next(iter(s)) for s in shard_of_part.values()}) == 8


# --- what a user calls ----------------------------------------------------------------------

CALLS = [
    ("select * from rerankdb.rerank(%s, %s)", lambda u, c, s: [u, c]),
    ("select * from rerankdb.rerank(%s, %s, 5)", lambda u, c, s: [u, c]),
    ("select * from rerankdb.rerank(%s, %s, diversity => 0.3)", lambda u, c, s: [u, c]),
    ("select * from rerankdb.rerank(%s, %s, context_items => %s)", lambda u, c, s: [u, c, c[:2]]),
    ("select * from rerankdb.rerank(%s, %s, exclude_seen => true)", lambda u, c, s: [u, c]),
    ("select * from rerankdb.rerank_scored(%s, %s, %s)", lambda u, c, s: [u, c, s]),
    ("select * from rerankdb.rerank_scored(%s, %s, %s, 0.2, 4, 0.5)", lambda u, c, s: [u, c, s]),
    ("select * from rerankdb.recommend(%s, 10)", lambda u, c, s: [u]),
    ("select * from rerankdb.recommend(%s, 10, false)", lambda u, c, s: [u]),
    ("select * from rerankdb.explain(%s, %s)", lambda u, c, s: [u, c[:4]]),
    ("select * from rerankdb.similar_items(%s, 5)", lambda u, c, s: [c[0]]),
]


def test_every_public_function_gives_the_same_rows_as_one_node(curl: str, db_url: str, cconn: Any) -> None:
    write_world(curl, np.random.default_rng(7))
    write_world(db_url, np.random.default_rng(7))
    assert user_vectors(cconn).keys() == set(range(1, N_USERS + 1))
    rng = np.random.default_rng(1)
    nodes = set()
    for user in [*range(1, N_USERS + 1), 10_000]:  # every user, and one nobody knows
        cands = [int(i) for i in rng.choice(np.arange(1, N_ITEMS + 1), 20, replace=False)]
        scores = [float(x) for x in rng.random(20)]
        for query, args in CALLS:
            params = args(user, cands, scores)
            one, dist = rows(db_url, query, params), rows(curl, query, params)
            assert same_rows(one, dist), (query, user)
        nodes.add(node_of(cconn, user))
    assert len(nodes) == 2, "users on both worker nodes"
    for user in (3, 4, 10_000):
        assert rows(curl, "select rerankdb.forget_user(%s)", [user]) == rows(
            db_url, "select rerankdb.forget_user(%s)", [user]
        )
        assert same_rows(
            rows(curl, "select * from rerankdb.rerank(%s, %s)", [user, [1, 2, 3]]),
            rows(db_url, "select * from rerankdb.rerank(%s, %s)", [user, [1, 2, 3]]),
        )


@pytest.mark.parametrize(
    "call",
    [
        "select * from rerankdb.rerank({u}, array[1, 2, 3]::bigint[])",
        "select * from rerankdb.rerank_scored({u}, array[1, 2]::bigint[], array[0.5, 0.1])",
        "select * from rerankdb.recommend({u}, 10)",
        "select * from rerankdb.explain({u}, array[1]::bigint[])",
        "select * from rerankdb.forget_user({u})",
    ],
)
def test_a_call_is_delegated_to_the_users_worker_node(cconn: Any, call: str) -> None:
    for user in (1, 2, 3, 5, 8):
        plan = "\n".join(r[0] for r in cconn.execute("explain " + call.format(u=user)))
        assert "Task Count: 1" in plan, plan
        assert f"port={node_of(cconn, user)} " in plan, plan
        assert "Function Scan" in plan, plan


def test_forget_user_erases_a_user_on_their_node_and_nobody_else(curl: str, cconn: Any) -> None:
    write_world(curl, np.random.default_rng(3))
    tables = ["interactions", "user_state", "user_vectors"]
    users = [u for u in range(1, 11)]
    assert len({node_of(cconn, u) for u in users}) == 2
    before = {
        t: dict(cconn.execute(f"select user_id, count(*) from rerankdb.{t} group by 1")) for t in tables
    }
    for user in users[:5]:
        assert (
            cconn.execute("select rerankdb.forget_user(%s)", [user]).fetchone()[0]
            == before["interactions"][user]
        )
    for t in tables:
        now = dict(cconn.execute(f"select user_id, count(*) from rerankdb.{t} group by 1"))
        assert not set(users[:5]) & set(now), t
        assert now == {u: n for u, n in before[t].items() if u not in users[:5]}, t
    queued = cconn.execute(
        "select count(*) from rerankdb.user_rebuild_queue where user_id = any(%s)", [users[:5]]
    ).fetchone()
    assert queued == (0,), "nothing left to rebuild for them"


# --- the worker -----------------------------------------------------------------------------


def worker_process(url: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "RERANKDB_DATABASE_URL": url,
        "RERANKDB_POLL_SECONDS": "0.05",
        "RERANKDB_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "rerankdb.cli", "worker", "--no-encoder"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )


def counted_against_the_log(conn: Any) -> None:
    """Every user's state counts exactly their rows of the log; the queue is empty."""
    log_counts = dict(conn.execute("select user_id, count(*) from rerankdb.interactions group by 1"))
    assert state_counts(conn) == log_counts
    assert conn.execute("select count(*) from rerankdb.interaction_queue").fetchone() == (0,)


def test_two_worker_processes_fold_exactly_once_while_the_app_writes_and_a_node_restarts(
    cluster: citus.Cluster, curl: str, cconn: Any
) -> None:
    with Client(curl) as client:
        client.upsert_items([{"item_id": i, "content": f"item {i}"} for i in range(1, N_ITEMS + 1)])
        client.set_item_vectors(
            list(range(1, N_ITEMS + 1)), np.random.default_rng(0).standard_normal((N_ITEMS, DIM))
        )
    workers = [worker_process(curl), worker_process(curl)]
    written = 0
    failed_writes = 0
    try:
        rng = np.random.default_rng(5)
        with Client(curl) as app:
            restarter = threading.Thread(target=citus.restart_node, args=(cluster, 2))
            batch, after_restart = 0, 0
            while after_restart < 20:  # 20 batches before, and 20 after the node is back
                batch += 1
                if batch == 20:  # a worker node goes down mid-way, as after a crash, and comes back
                    restarter.start()
                elif batch > 20 and not restarter.is_alive():
                    after_restart += 1
                users = rng.integers(1, 200, 15)
                try:
                    written += app.record_interactions(
                        [Interaction(int(u), int(rng.integers(1, N_ITEMS + 1))) for u in users]
                    )
                except (psycopg.Error, RerankdbError):  # a node holding some of these users is down
                    failed_writes += 1
                time.sleep(0.02)
            restarter.join()
        assert wait_for(
            lambda: cconn.execute("select count(*) from rerankdb.interaction_queue").fetchone() == (0,), 60
        )
        for w in workers:
            assert w.poll() is None, "the workers kept running through the restart"
    finally:
        for w in workers:
            w.terminate()
            w.wait(30)
    assert cconn.execute("select count(*) from rerankdb.interactions").fetchone() == (written,)
    assert written >= 15 * 35, (written, failed_writes)
    counted_against_the_log(cconn)
    user_refresh.rebuild_users(cconn, None, 0.0, DIM, user_refresh.all_users(cconn))
    counted_against_the_log(cconn)


def test_a_worker_node_restarted_during_a_fold_loses_and_doubles_nothing(
    cluster: citus.Cluster, curl: str, cconn: Any
) -> None:
    write_world(curl, np.random.default_rng(11))
    with Client(curl) as app:
        app.record_interactions([Interaction(u, 1 + u % N_ITEMS) for u in range(1, 300)])
    restarted = []

    def crash_once() -> None:  # just before a batch commits
        if not restarted:
            restarted.append(True)
            citus.restart_node(cluster, 1)

    with pytest.raises(psycopg.Error):
        for _ in range(20):
            drain(cconn, None, 0.0, DIM, before_commit=crash_once)
    assert restarted
    assert cconn.execute("select count(*) from rerankdb.interaction_queue").fetchone()[0] > 0
    with db.connect(curl, autocommit=True) as again:  # the worker reconnects, and folds the rest
        drain(again, None, 0.0, DIM)
        counted_against_the_log(again)
        assert again.execute("select count(*) from pg_prepared_xacts").fetchone() == (0,)


# --- bad rows -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ("(400001, 1, 'like', 'infinity', null)", "occurred_at must be a finite time, got infinity"),
        ("(400001, 1, 'like', now() + interval '1 day', null)", "is in the future"),
        ("(400001, 1, 'like', now(), 1e7)", "weight must be between -1e6 and 1e6, got 10000000"),
    ],
)
def test_the_door_refuses_a_bad_row_and_writes_nothing_of_its_statement(
    curl: str, cconn: Any, values: str, message: str
) -> None:
    write_world(curl, np.random.default_rng(2))
    before = cconn.execute("select count(*) from rerankdb.interactions").fetchone()
    with pytest.raises(psycopg.DataError, match=message):
        cconn.execute(
            "insert into rerankdb.interactions (user_id, item_id, kind, occurred_at, weight) values "
            "(1, 1, 'like', now(), null), (2, 2, 'like', now(), null), " + values
        )
    assert cconn.execute("select count(*) from rerankdb.interactions").fetchone() == before


def test_a_row_that_cannot_be_folded_is_set_aside_and_holds_up_nobody(curl: str, cconn: Any) -> None:
    write_world(curl, np.random.default_rng(4))
    # Within the tolerated clock skew when written; beyond it once the tolerance is cut.
    cconn.execute("update rerankdb.settings set future_tolerance = '1 hour'")
    cconn.execute(
        "insert into rerankdb.interactions (user_id, item_id, kind, occurred_at) values "
        "(5, 1, 'like', now() + interval '30 minutes'), (6, 2, 'like', now()), (7, 3, 'like', now())"
    )
    cconn.execute("update rerankdb.settings set future_tolerance = '0'")
    report = drain(cconn, None, 0.0, DIM)
    assert (report.interactions_folded, report.interactions_set_aside) == (2, 1)
    failed = cconn.execute("select user_id, attempts, last_error from rerankdb.interaction_queue").fetchall()
    assert [(u, a) for u, a, _ in failed] == [(5, 1)]
    assert "is in the future" in failed[0][2]
    cconn.execute("update rerankdb.settings set future_tolerance = '1 hour'")
    cconn.execute("update rerankdb.interaction_queue set not_before = now()")
    assert drain(cconn, None, 0.0, DIM).interactions_folded == 1, "retried, and folded once it can be"
    counted_against_the_log(cconn)


# --- items ----------------------------------------------------------------------------------


def test_the_worker_embeds_new_and_changed_items_and_keeps_given_vectors(
    curl: str, cconn: Any, encoder: Any
) -> None:
    """No trigger can queue items on Citus (a reference table): the worker finds them."""
    with Client(curl) as client:
        client.upsert_items(
            [{"item_id": i, "content": f"a film about {w}"} for i, w in enumerate(["cats", "dogs"], 1)]
        )
        client.upsert_items([{"item_id": 3, "content": "given"}])
        given = np.random.default_rng(0).standard_normal((1, DIM))
        client.set_item_vectors([3], given)
        client.record_interactions([Interaction(1, 1, "like"), Interaction(2, 2, "like")])
    report = drain(cconn, encoder, 0.5, DIM)
    assert (report.items_embedded, report.interactions_folded) == (2, 2)
    cconn.execute("update rerankdb.items set content = 'a film about horses' where item_id = 2")
    cconn.execute("insert into rerankdb.items (item_id, content) values (4, 'a film about birds')")
    cconn.execute("insert into rerankdb.interactions (user_id, item_id, kind) values (3, 4, 'like')")
    report = drain(cconn, encoder, 0.5, DIM)
    assert (report.items_embedded, report.interactions_folded) == (2, 1), "changed and new; 3's own kept"
    stored = (
        cconn.execute("select embedding from rerankdb.item_rank where item_id = 3").fetchone()[0].to_numpy()
    )
    assert np.allclose(stored, given[0] / np.linalg.norm(given[0]), atol=1e-6)
    horses = encoder.encode(["a film about horses"])[0]
    rank2 = (
        cconn.execute("select embedding from rerankdb.item_rank where item_id = 2").fetchone()[0].to_numpy()
    )
    assert np.allclose(rank2, horses / np.linalg.norm(horses), atol=1e-5), "item_rank follows item_vectors"
    assert drain(cconn, encoder, 0.5, DIM).items_embedded == 0, "nothing found twice"


# --- training and tuning --------------------------------------------------------------------


def test_a_training_and_a_tune_run_on_the_cluster(curl: str, cconn: Any) -> None:
    from rerankdb import sequence, train, tune

    rng = np.random.default_rng(9)
    with Client(curl) as client:
        client.upsert_items([{"item_id": i, "content": f"item {i}"} for i in range(1, N_ITEMS + 1)])
        client.set_item_vectors(list(range(1, N_ITEMS + 1)), rng.standard_normal((N_ITEMS, DIM)))
        client.record_interactions(
            [
                Interaction(
                    u, int((u * 3 + 7 * k) % N_ITEMS) + 1, "like", occurred_at=T0 + timedelta(hours=k)
                )
                for u in range(1, 121)
                for k in range(8)
            ]
        )
    drain(cconn, None, 0.0, DIM)
    config = sequence.SequenceConfig(dim=16, max_len=8, max_epochs=5, patience=5, eval_users=40, lr=5e-3)
    report = train.train(cconn, None, 0.0, DIM, k=8, sequence=True, sequence_config=config)
    assert report.dim == 8 and report.sequence_epochs > 0
    have = cconn.execute("select count(*), count(collab), count(seq) from rerankdb.user_vectors").fetchone()
    assert have == (120, 120, 120), "every user rebuilt into the new spaces, on every node"
    assert cconn.execute("select count(*) from rerankdb.collab_keys").fetchone()[0] == report.items
    assert len(rows(curl, "select * from rerankdb.recommend(5, 10)", [])) == 10
    tuned = tune.tune(cconn, dim=DIM, max_users=120)
    assert tuned.written and tuned.users > 0
    counted_against_the_log(cconn)


# --- roles ----------------------------------------------------------------------------------


@pytest.fixture
def login(cconn: Any, curl: str) -> Iterator[Callable[[str], str]]:
    with logins(cconn, curl) as make:
        yield make


def test_the_app_reader_and_worker_roles_work_on_every_node(
    curl: str, cconn: Any, login: Callable[[str], str]
) -> None:
    write_world(curl, np.random.default_rng(6))
    app, reader, worker = login("rerankdb_app"), login("rerankdb_reader"), login("rerankdb_worker")
    users = [1, 2, 3, 5, 8]
    assert len({node_of(cconn, u) for u in users}) == 2
    for user in users:  # delegated to both workers, run there as the functions' owner
        expected = rows(curl, "select * from rerankdb.rerank(%s, %s)", [user, [1, 2, 3, 4]])
        assert rows(reader, "select * from rerankdb.rerank(%s, %s)", [user, [1, 2, 3, 4]]) == expected
        assert rows(app, "select * from rerankdb.rerank(%s, %s)", [user, [1, 2, 3, 4]]) == expected
        assert len(rows(app, "select * from rerankdb.recommend(%s, 5)", [user])) == 5
        assert rows(app, "select * from rerankdb.explain(%s, %s)", [user, [1]]) == rows(
            curl, "select * from rerankdb.explain(%s, %s)", [user, [1]]
        )
    with Client(app) as client:
        client.record_interactions([Interaction(u, 9, "like") for u in users])
        client.upsert_items([{"item_id": 500, "content": "new"}])
    assert denied(reader, "insert into rerankdb.interactions (user_id, item_id) values (1, 1)")
    assert denied(reader, "select * from rerankdb.user_vectors")
    assert denied(app, "select embedding from rerankdb.user_vectors")
    assert denied(app, "select * from rerankdb.interaction_queue")
    with db.connect(worker, autocommit=True) as wconn:
        assert drain(wconn, None, 0.0, DIM).interactions_folded == len(users)
    with Client(worker) as as_worker:
        assert as_worker.status().pending_interactions == 0, "the view's grants are back"
    with (
        Client(app) as as_app,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table item_queue"),
    ):
        as_app.status()  # the limit that remains: Citus checks the shards with the reader's rights
    assert rows(app, "select rerankdb.forget_user(%s)", [1]) == [(7,)]
    counted_against_the_log(cconn)


def test_the_worker_says_once_that_it_polls_on_citus(curl: str, cconn: Any, caplog: Any) -> None:
    from rerankdb.config import Settings
    from rerankdb.worker import Worker

    slow, fast = (
        Worker(curl, Settings(poll_seconds=1.0), None),
        Worker(curl, Settings(poll_seconds=0.05), None),
    )
    with caplog.at_level("WARNING", logger="rerankdb.worker"):
        slow._warn_if_citus_polls_slowly(cconn)
        slow._warn_if_citus_polls_slowly(cconn)
        fast._warn_if_citus_polls_slowly(cconn)
    said = [r.getMessage() for r in caplog.records if "no NOTIFY" in r.getMessage()]
    assert len(said) == 1 and "RERANKDB_POLL_SECONDS=0.05" in said[0] and "every 1 s" in said[0]
