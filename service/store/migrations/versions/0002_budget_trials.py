"""A study's trial budget as changed after submit (PATCH /v1/studies/{id}).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("studies", sa.Column("budget_trials", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("studies", "budget_trials")
