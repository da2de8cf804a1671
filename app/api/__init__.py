"""The JSON API: one blueprint per area, every view with an access rule."""

from __future__ import annotations

from flask import Flask


def register_api(app: Flask) -> None:
    from app.api import audit, auth, customers, exports, imports, jobs, openapi, transforms, users

    for module in (auth, users, audit, customers, imports, jobs, transforms, exports, openapi):
        app.register_blueprint(module.bp)
