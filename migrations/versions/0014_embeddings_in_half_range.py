"""embeddings_in_half_range: a stored embedding with a value beyond a 16-bit float is divided by its norm.

Search reads candidates' vectors as halfvec and archiving moves a vector into the halfvec column; a value
beyond 65504 there fails ("out of range for type halfvec"), so one such memory made every search that found
it a 500. Writes refuse such values since the 422 of memsvc.validation.EMBEDDING_MAX; this repairs the rows
written before it. Retrieval compares vectors by cosine, which the scale does not change, and a unit vector's
values all fit. Only rows whose norm exceeds the bound are looked at (a vector's largest value is at most
its norm), so the scan of values is short.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

HALF_MAX = 65504.0
RESCALE = f"""
    UPDATE memories SET embedding = l2_normalize(embedding)
    WHERE embedding IS NOT NULL AND vector_norm(embedding) > {HALF_MAX}
      AND EXISTS (SELECT 1 FROM unnest(embedding::real[]) AS v WHERE abs(v) > {HALF_MAX})
"""


def upgrade() -> None:
    op.execute(RESCALE)


def downgrade() -> None:
    pass  # the former scale is not kept; cosine ranks the rescaled vectors as it ranked the originals
