"""jobs: whether a job keeps its uploaded input after it succeeds, per job instead of per kind

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 04:10:00

Until now every transcription job kept its uploaded audio until it was purged, the audio of a Qiniu
request too, which nothing plays back. Existing transcription jobs keep what they kept.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("keeps_inputs", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    jobs = sa.table("jobs", sa.column("kind", sa.String()), sa.column("keeps_inputs", sa.Boolean()))
    op.execute(jobs.update().where(jobs.c.kind == "transcription").values(keeps_inputs=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("keeps_inputs")
