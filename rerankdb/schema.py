"""SQLAlchemy Core definitions of rerankdb's tables.

They mirror the migrations exactly (a test compares them with a migrated
database) and serve applications that prefer SQLAlchemy to raw SQL.  The
vector dimension is an install-time choice, hence :func:`build_metadata`.
"""

from __future__ import annotations

from pgvector.sqlalchemy import HALFVEC, Vector
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, DOUBLE_PRECISION, INTERVAL, JSONB, REAL
from sqlalchemy.types import UserDefinedType

from rerankdb.config import DEFAULT_DIM

SCHEMA = "rerankdb"


class Xid8(UserDefinedType[int]):
    """PostgreSQL's 64-bit transaction id (``pg_current_xact_id()``)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "xid8"


def _key_owned_by(name: str, parent: str) -> Column[int]:
    """A primary key that is also a foreign key to ``parent``: the row goes when its parent goes."""
    return Column(
        name,
        BigInteger,
        ForeignKey(f"{SCHEMA}.{parent}", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )


def build_metadata(dim: int = DEFAULT_DIM) -> MetaData:
    md = MetaData(schema=SCHEMA)
    now = func.now()
    Table(
        "config",
        md,
        Column("singleton", Boolean, primary_key=True, server_default=text("true")),
        Column("dim", Integer, nullable=False),
        Column("installed_at", DateTime(timezone=True), nullable=False, server_default=now),
        # Revision 0008: how item text vectors are stored, 'vector' or 'halfvec'.
        Column("storage", Text, nullable=False, server_default=text("'vector'::text")),
        comment="install-time facts; dim is the dimension of every embedding",
    )
    Table(
        "items",
        md,
        Column("item_id", BigInteger, primary_key=True, autoincrement=False),
        Column("content", Text, nullable=False),
        Column("metadata", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=now),
    )
    Table(
        "interaction_kinds",
        md,
        Column("kind", Text, primary_key=True),
        Column("weight", REAL, nullable=False),
    )
    interactions = Table(
        "interactions",
        md,
        Column("interaction_id", BigInteger, primary_key=True),
        # Revision 0013: in the key (Citus keys a distributed table by its distribution column).
        Column("user_id", BigInteger, primary_key=True, autoincrement=False),
        Column("item_id", BigInteger, nullable=False),
        # One of interaction_kinds: checked per statement by triggers since revision
        # 0016 (rerankdb.check_interactions, rerankdb.check_kinds), no foreign key.
        Column("kind", Text, nullable=False, server_default=text("'view'::text")),
        Column("weight", REAL, nullable=True),
        Column("context", Text, nullable=True),
        Column("occurred_at", DateTime(timezone=True), nullable=False, server_default=now),
    )
    Index("interactions_user_item_idx", interactions.c.user_id, interactions.c.item_id)
    Index("interactions_item_idx", interactions.c.item_id)
    # Revision 0011: a user's newest interactions first (the sequence space's reads).
    Index(
        "interactions_user_time_idx",
        interactions.c.user_id,
        interactions.c.occurred_at.desc(),
        interactions.c.interaction_id.desc(),
    )
    item_vectors = Table(
        "item_vectors",
        md,
        _key_owned_by("item_id", "items.item_id"),
        Column("embedding", Vector(dim), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=now),
        Column("content_sha256", LargeBinary, nullable=True),
        Column("model", Text, nullable=True),
    )
    Index(
        "item_vectors_embedding_hnsw",
        item_vectors.c.embedding,
        postgresql_using="hnsw",
        postgresql_ops={"embedding": "vector_ip_ops"},
    )
    Table(
        "user_vectors",
        md,
        Column("user_id", BigInteger, primary_key=True, autoincrement=False),
        Column("embedding", Vector(dim), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=now),
        Column("collab", Vector(), nullable=True),
        # Revision 0006: short-term intent.
        Column("short_embedding", Vector(), nullable=True),
        Column("short_collab", Vector(), nullable=True),
        # Revision 0011: the sequence space.
        Column("seq", Vector(), nullable=True),
        Column("seq_items", ARRAY(BigInteger), nullable=True),
        Column("seq_attention", ARRAY(REAL), nullable=True),
        postgresql_with={"toast_tuple_target": "8160"},
    )
    _worker_tables(md, dim)
    return md


def _worker_tables(md: MetaData, dim: int) -> None:
    """Revision 0002: the worker's queues and state."""
    clock = func.clock_timestamp()
    item_queue = Table(
        "item_queue",
        md,
        _key_owned_by("item_id", "items.item_id"),
        Column("enqueued_at", DateTime(timezone=True), nullable=False, server_default=clock),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=True),
        Column("not_before", DateTime(timezone=True), nullable=False, server_default=text("'-infinity'")),
    )
    Index("item_queue_due_idx", item_queue.c.not_before, item_queue.c.item_id)
    interaction_queue = Table(
        "interaction_queue",
        md,
        Column("interaction_id", BigInteger, primary_key=True, autoincrement=False),
        Column("item_id", BigInteger, nullable=False),
        # Revision 0009: claims by partition of users; 0013: in the key, as the log's.
        Column("user_id", BigInteger, primary_key=True, autoincrement=False),
        Column("deferred", Boolean, nullable=False, server_default=text("false")),
        Column("enqueued_at", DateTime(timezone=True), nullable=False, server_default=clock),
        # Revision 0005: interactions set aside after a failed fold.
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=True),
        Column("not_before", DateTime(timezone=True), nullable=False, server_default=text("'-infinity'")),
        # No foreign key to the log since revision 0016: its triggers
        # (rerankdb.unqueue_interactions) take a queue row along with its log row, in sets.
    )
    Index(
        "interaction_queue_partition_idx",
        text("hashint8(user_id)"),
        interaction_queue.c.interaction_id,
    )
    Index(
        "interaction_queue_deferred_idx",
        interaction_queue.c.item_id,
        postgresql_where=interaction_queue.c.deferred,
    )
    Table(
        "user_state",
        md,
        Column("user_id", BigInteger, primary_key=True, autoincrement=False),
        Column("weighted_sum", Vector(dim), nullable=False),
        Column("ref_time", DateTime(timezone=True), nullable=False),
        Column("interactions", BigInteger, nullable=False, server_default=text("0")),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("collab_sum", Vector(), nullable=True),
        Column("short_sum", Vector(), nullable=True),  # revision 0006
        Column("short_collab_sum", Vector(), nullable=True),
        postgresql_with={"toast_tuple_target": "8160"},
    )
    Table(
        "worker_state",
        md,
        Column("singleton", Boolean, primary_key=True, server_default=text("true")),
        Column("model", Text, nullable=True),
        Column("last_item_refresh_at", DateTime(timezone=True), nullable=True),
        Column("last_user_refresh_at", DateTime(timezone=True), nullable=True),
        Column("last_rebuild_at", DateTime(timezone=True), nullable=True),
        Column("states_half_life", INTERVAL, nullable=True),  # revision 0006
        Column("states_short_half_life", INTERVAL, nullable=True),
        Column("last_compact_at", DateTime(timezone=True), nullable=True),  # revision 0009
        Column("compacted_before", DateTime(timezone=True), nullable=True),
    )
    # Revision 0003: collaborative vectors and settings.
    Table(
        "item_rank",
        md,
        _key_owned_by("item_id", "items.item_id"),
        Column("embedding", Vector(dim), nullable=False),
        Column("collab", Vector(), nullable=True),
        Column("support", Integer, nullable=True),
        Column("seq", Vector(), nullable=True),  # revision 0011
        postgresql_with={"toast_tuple_target": "4080"},
    )
    # Revision 0007: the collaborative vectors' HNSW index, on fixed-size keys,
    # rebuilt by rerankdb.refresh_collab_keys after each training.
    collab_keys = Table(
        "collab_keys",
        md,
        Column("item_id", BigInteger, primary_key=True, autoincrement=False),
        Column("key", Vector(64), nullable=False),
    )
    Index(
        "collab_keys_hnsw",
        collab_keys.c.key,
        postgresql_using="hnsw",
        postgresql_ops={"key": "vector_ip_ops"},
    )
    # Revision 0014: one HNSW index by rerank's score itself (rerankdb.refresh_hybrid_keys
    # builds it, with the dimension and the index, and swaps it in), what it was built
    # with, and the items embedded since.
    Table(
        "hybrid_keys",
        md,
        Column("item_id", BigInteger, primary_key=True, autoincrement=False),
        Column("key", HALFVEC(), nullable=False),
    )
    Table(
        "hybrid_meta",
        md,
        Column("singleton", Boolean, primary_key=True, server_default=text("true")),
        Column("text_dim", Integer, nullable=False),
        Column("collab_dim", Integer, nullable=False),
        Column("seq_dim", Integer, nullable=False),
        Column("collab_weight", REAL, nullable=False),
        Column("collab_shrink", REAL, nullable=False),
        Column("sequence_weight", DOUBLE_PRECISION, nullable=False),
        Column("trained_at", DateTime(timezone=True), nullable=True),
        Column("built_at", DateTime(timezone=True), nullable=False),
        Column("items", BigInteger, nullable=False),
    )
    Table(
        "hybrid_keys_fresh",
        md,
        Column("item_id", BigInteger, primary_key=True, autoincrement=False),
        Column("xid", Xid8(), nullable=False, server_default=text("pg_current_xact_id()")),
    )
    Table(
        "settings",
        md,
        Column("singleton", Boolean, primary_key=True, server_default=text("true")),
        Column("collab_weight", REAL, nullable=False, server_default=text("0.7")),
        Column("collab_shrink", REAL, nullable=False, server_default=text("0")),
        Column("collab_dim", Integer, nullable=False, server_default=text("64")),
        Column("trained_at", DateTime(timezone=True), nullable=True),
        # Revision 0004: centered scoring.
        Column("text_center", Vector(), nullable=True),
        Column("collab_center", Vector(), nullable=True),
        Column("text_centering", REAL, nullable=False, server_default=text("1")),
        Column("collab_centering", REAL, nullable=False, server_default=text("0")),
        # Revision 0005: trust.
        Column("future_tolerance", INTERVAL, nullable=False, server_default=text("'00:05:00'::interval")),
        # Revision 0006: short-term intent.
        Column("half_life", INTERVAL, nullable=True, server_default=text("'30 days'::interval")),
        Column("short_half_life", INTERVAL, nullable=False, server_default=text("'00:10:00'::interval")),
        Column("short_weight", REAL, nullable=False, server_default=text("0.5")),
        Column("collab_short_weight", REAL, nullable=False, server_default=text("0.5")),
        Column("tuned_at", DateTime(timezone=True), nullable=True),
        Column("tune_report", JSONB, nullable=True),
        # Revision 0007: reranking features.
        Column("context_items_weight", REAL, nullable=False, server_default=text("0.5")),
        # Revision 0011: the sequence space.
        Column("sequence_weight", DOUBLE_PRECISION, nullable=False, server_default=text("0.3")),
    )
    Table(
        "sequence_model",
        md,
        Column("version", BigInteger, primary_key=True, autoincrement=False),
        Column("trained_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("items", ARRAY(BigInteger), nullable=False),
        Column("dim", Integer, nullable=False),
        Column("max_len", Integer, nullable=False),
        Column("weights", LargeBinary, nullable=False),
        Column("report", JSONB, nullable=True),
    )
    # Revision 0009: a bounded log, and the workers' figures.
    Table(
        "user_snapshot",
        md,
        Column("user_id", BigInteger, primary_key=True, autoincrement=False),
        Column("weighted_sum", Vector(dim), nullable=False),
        Column("ref_time", DateTime(timezone=True), nullable=False),
        Column("interactions", BigInteger, nullable=False),
        Column("collab_sum", Vector(), nullable=True),
        Column("short_sum", Vector(dim), nullable=False),
        Column("short_collab_sum", Vector(), nullable=True),
        Column("collab_trained_at", DateTime(timezone=True), nullable=True),
        Column("half_life", INTERVAL, nullable=True),
        Column("short_half_life", INTERVAL, nullable=False),
        Column("compacted_before", DateTime(timezone=True), nullable=False),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        postgresql_with={"toast_tuple_target": "8160"},
    )
    Table(
        "workers",
        md,
        Column("worker_id", Text, primary_key=True),
        Column("host", Text, nullable=False),
        Column("pid", Integer, nullable=False),
        Column("started_at", DateTime(timezone=True), nullable=False),
        Column("seen_at", DateTime(timezone=True), nullable=False),
        *(
            Column(name, BigInteger, nullable=False, server_default=text("0"))
            for name in (
                "interactions_folded",
                "items_embedded",
                "interactions_set_aside",
                "items_failed",
                "users_rebuilt",
                "drains",
            )
        ),
        Column("busy_seconds", DOUBLE_PRECISION, nullable=False, server_default=text("0")),
        Column("last_drain_seconds", DOUBLE_PRECISION, nullable=True),
    )
    Table(
        "user_rebuild_queue",
        md,
        Column("user_id", BigInteger, primary_key=True, autoincrement=False),
        Column("enqueued_at", DateTime(timezone=True), nullable=False, server_default=clock),
        Column("attempts", Integer, nullable=False, server_default=text("0")),
        Column("last_error", Text, nullable=True),
        Column("not_before", DateTime(timezone=True), nullable=False, server_default=text("'-infinity'")),
    )
