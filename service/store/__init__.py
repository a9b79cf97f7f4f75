"""The study store: SQLAlchemy models, Alembic migrations and checked status transitions."""

from service.store.db import Store, migrate
from service.store.models import TRANSITIONS, InvalidTransition, StudyRecord, StudyStatus

__all__ = ["TRANSITIONS", "InvalidTransition", "Store", "StudyRecord", "StudyStatus", "migrate"]
