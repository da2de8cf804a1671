"""Each job kind's handler: `run(ctx)`, and what its records become on failure or cancel."""

from __future__ import annotations

from app.exports.service import ExportJob
from app.imports.service import ImportJob
from app.transforms.service import TransformJob

KIND_HANDLERS = {
    "import": ImportJob(),
    "transform": TransformJob(),
    "export": ExportJob(),
}
