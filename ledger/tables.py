"""SQLAlchemy Core descriptions of the tables created in migrations/ (the migrations are the truth:
constraints, triggers and grants live there, in SQL)."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    Text,
    Uuid,
    text,
)

metadata = MetaData()

communities = Table(
    "communities",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("code", Text),
    Column("name", Text),
    Column("district", Text),
    Column("households", Integer),
    Column("created_at", DateTime(timezone=True)),
)

projects = Table(
    "projects",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("community_id", BigInteger),
    Column("code", Text),
    Column("title", Text),
    Column("description", Text),
    Column("households_in_scope", Integer),
    Column("stage", Text),
    Column("spending_gate", Text),
    Column("countersign_over_fen", BigInteger),
    Column("created_at", DateTime(timezone=True)),
)

budget_lines = Table(
    "budget_lines",
    metadata,
    Column("community_id", BigInteger),
    Column("project_id", BigInteger, primary_key=True),
    Column("position", SmallInteger),
    Column("category", Text, primary_key=True),
    Column("label", Text),
    Column("source", Text),
    Column("amount_fen", BigInteger),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("community_id", BigInteger),
    Column("project_id", BigInteger),
    Column("code", Text),
    Column("is_memorandum", Boolean),
)

balances = Table(
    "balances",
    metadata,
    Column("account_id", BigInteger, primary_key=True),
    Column("community_id", BigInteger),
    Column("project_id", BigInteger),
    Column("balance_fen", BigInteger),
    Column("floor_fen", BigInteger),
    Column("last_seq", BigInteger),
)

contributors = Table(
    "contributors",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("community_id", BigInteger),
    Column("public_id", Uuid),
    Column("type", Text),
    Column("name", Text),
    Column("household", Text),
    Column("phone", Text),
    Column("salt", LargeBinary),
    Column("erased_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True)),
)

erasures = Table(
    "erasures",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("community_id", BigInteger),
    Column("contributor_id", BigInteger),
    Column("reason", Text),
    Column("erased_by", Text),
    Column("erased_at", DateTime(timezone=True)),
)

contributor_totals = Table(
    "contributor_totals",
    metadata,
    Column("community_id", BigInteger),
    Column("project_id", BigInteger, primary_key=True),
    Column("contributor_id", BigInteger, primary_key=True),
    Column("paid_fen", BigInteger),
    Column("refunded_fen", BigInteger),
    Column("pledged_fen", BigInteger),
    Column("in_kind_fen", BigInteger),
)

entries = Table(
    "entries",
    metadata,
    Column("community_id", BigInteger),
    Column("project_id", BigInteger, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("kind", Text),
    Column("amount_fen", BigInteger),
    Column("occurred_on", Date),
    Column("recorded_at", DateTime(timezone=True)),
    Column("recorded_by", Text),
    Column("memo", Text),
    Column("contributor_id", BigInteger),
    Column("contributor_commitment", LargeBinary),
    Column("anonymous", Boolean),
    Column("anonymous_id", Uuid),
    Column("channel", Text),
    Column("receipt_no", Text),
    Column("grantor", Text),
    Column("document_no", Text),
    Column("payee", Text),
    Column("category", Text),
    Column("invoice_no", Text),
    Column("description", Text),
    Column("reverses_seq", BigInteger),
    Column("reason", Text),
    Column("payer", Text),
    Column("document", Text),
    Column("leaf_hash", LargeBinary),
)

postings = Table(
    "postings",
    metadata,
    Column("community_id", BigInteger),
    Column("project_id", BigInteger, primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("line_no", SmallInteger, primary_key=True),
    Column("account_id", BigInteger),
    Column("side", Text),
    Column("amount_fen", BigInteger),
)

project_heads = Table(
    "project_heads",
    metadata,
    Column("project_id", BigInteger, primary_key=True),
    Column("community_id", BigInteger),
    Column("size", BigInteger),
    Column("frontier", LargeBinary),
    Column("root_hash", LargeBinary),
    Column("updated_at", DateTime(timezone=True)),
)

merkle_nodes = Table(
    "merkle_nodes",
    metadata,
    Column("community_id", BigInteger),
    Column("project_id", BigInteger, primary_key=True),
    Column("level", SmallInteger, primary_key=True),
    Column("idx", BigInteger, primary_key=True),
    Column("hash", LargeBinary),
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("community_id", BigInteger),
    Column("project_id", BigInteger),
    Column("stage", Text),
    Column("held_on", Date),
    Column("body", Text),
    Column("eligible", Integer),
    Column("attendees", Integer),
    Column("votes_for", Integer),
    Column("votes_against", Integer),
    Column("votes_abstain", Integer),
    Column("summary", Text),
    Column("minutes_sha256", Text),
    Column("notice_days", Integer),
    Column("recorded_at", DateTime(timezone=True)),
    Column("recorded_by", Text),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    Column("community_id", BigInteger),
    Column("name", Text),
    Column("role", Text),
    Column("token_hash", LargeBinary),
    Column("created_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("community_id", BigInteger),
    Column("fingerprint", LargeBinary),
    Column("status", SmallInteger),
    Column("body", Text),
    Column("created_at", DateTime(timezone=True)),
)

project_award_policies = Table(
    "project_award_policies",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("community_id", BigInteger),
    Column("project_id", BigInteger),
    Column("policy_code", Text),
    Column("assigned_by", Text),
    Column("assigned_at", DateTime(timezone=True)),
)
