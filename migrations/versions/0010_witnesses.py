"""Witnesses (见证): the bodies that cosign a community's sheets, and their cosignatures.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

- ``witnesses``: a community's 居委会, 业委会, 监督委员会 or 街道 with its Ed25519 public key
  (32 bytes). Its name is its signed-note key name, so it may hold no space and no "+".
- ``cosignatures``: a witness's Ed25519 signature (C2SP signed-note, type 0x01) over a sheet's
  checkpoint text, stored with that exact text: the origin line comes from the service's public
  address, which may change, and a signature must stay checkable against what was signed.
Both append-only: a signature is evidence, never withdrawn.
"""

from collections.abc import Sequence

from migrations.helpers import grant_sequences, make_append_only, run_script

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    run_script(
        """
        CREATE TABLE witnesses (
            id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id bigint NOT NULL REFERENCES communities (id),
            name         text NOT NULL,
            kind         text,
            public_key   bytea NOT NULL,
            created_by   text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT witnesses_name_unique UNIQUE (community_id, name),
            CONSTRAINT witnesses_key_unique UNIQUE (community_id, public_key),
            CONSTRAINT witnesses_name_format CHECK (char_length(name) BETWEEN 1 AND 100 AND name !~ '[[:space:]+]'),
            CONSTRAINT witnesses_kind_known
                CHECK (kind IN ('residents_committee', 'owners_committee', 'supervisory_committee', 'street')),
            CONSTRAINT witnesses_key_length CHECK (octet_length(public_key) = 32)
        );

        CREATE TABLE cosignatures (
            id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            community_id  bigint NOT NULL,
            disclosure_id bigint NOT NULL REFERENCES disclosures (id),
            witness_id    bigint NOT NULL REFERENCES witnesses (id),
            checkpoint    text NOT NULL,
            signature     bytea NOT NULL,
            created_at    timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT cosignatures_once UNIQUE (disclosure_id, witness_id, checkpoint),
            CONSTRAINT cosignatures_signature_length CHECK (octet_length(signature) = 64),
            CONSTRAINT cosignatures_checkpoint_length CHECK (char_length(checkpoint) <= 400)
        );
        CREATE INDEX cosignatures_disclosure_idx ON cosignatures (disclosure_id, id);
        """
    )
    make_append_only("witnesses")
    make_append_only("cosignatures")
    grant_sequences()


def downgrade() -> None:
    raise NotImplementedError("the ledger schema is never dropped by a migration")
