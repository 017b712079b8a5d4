"""storage: an owner record for every stored object

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 15:10:00

Dataset clips stored before this revision already sit at their new keys (``datasets/<id>/<file>``
under the local blob directory); they get their owner records here so the sweeper keeps them.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_objects",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("owner_kind", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("stored_objects", schema=None) as batch_op:
        batch_op.create_index("ix_stored_objects_owner", ["owner_kind", "owner_id"], unique=False)
    clips = sa.table(
        "dataset_clips",
        sa.column("dataset_id", sa.Integer()),
        sa.column("file_name", sa.String()),
        sa.column("size_bytes", sa.Integer()),
        sa.column("created_at", sa.DateTime(timezone=True)),
    )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(clips.c.dataset_id, clips.c.file_name, clips.c.size_bytes, clips.c.created_at)
    ).all()
    if rows:
        objects = sa.table(
            "stored_objects",
            sa.column("key", sa.String()),
            sa.column("owner_kind", sa.String()),
            sa.column("owner_id", sa.String()),
            sa.column("size_bytes", sa.BigInteger()),
            sa.column("created_at", sa.DateTime(timezone=True)),
        )
        op.bulk_insert(
            objects,
            [
                {
                    "key": f"datasets/{row.dataset_id}/{row.file_name}",
                    "owner_kind": "dataset",
                    "owner_id": str(row.dataset_id),
                    "size_bytes": row.size_bytes,
                    "created_at": row.created_at,
                }
                for row in rows
            ],
        )


def downgrade() -> None:
    with op.batch_alter_table("stored_objects", schema=None) as batch_op:
        batch_op.drop_index("ix_stored_objects_owner")
    op.drop_table("stored_objects")
