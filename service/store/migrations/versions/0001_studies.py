"""The studies table.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True, unique=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("study_dir", sa.Text(), nullable=True),
        sa.Column("driver", sa.String(128), nullable=True),
        sa.Column("parent_run_id", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_studies_name", "studies", ["name"])
    op.create_index("ix_studies_status", "studies", ["status"])


def downgrade() -> None:
    op.drop_index("ix_studies_status", "studies")
    op.drop_index("ix_studies_name", "studies")
    op.drop_table("studies")
