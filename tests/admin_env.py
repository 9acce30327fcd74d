"""The panel's usual test setting: the demo tenant (A) with its tenant admin ``a-admin``
and, when asked, a second tenant B (``test_admin_isolation.B_DOC``), on a fresh
PostgreSQL database; an app built with ``SETTINGS`` and a client signed in as a-admin."""
from __future__ import annotations

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import sessionmaker
from werkzeug.security import generate_password_hash

from admin.app import create_app
from orchestrator.config import Settings
from orchestrator.db import schema as db
from orchestrator.tenant_doc import import_tenant
from tests.test_admin_isolation import B_DOC, login
from tests.test_admin_panel import DEMO

SETTINGS = Settings(admin_password="operator-secret-1", admin_secret_key="x" * 40)


def seed(factory: sessionmaker, *, with_b: bool = True) -> sessionmaker:
    """Import the demo tenant (and B) and add A's admin ``a-admin`` / ``a-admin-secret``."""
    with factory.begin() as s:
        a = import_tenant(s, DEMO)
        if with_b:
            import_tenant(s, B_DOC)
        s.add(db.AdminUser(username="a-admin", role=db.AdminRole.TENANT_ADMIN, tenant_id=a,
                           password_hash=generate_password_hash("a-admin-secret")))
    return factory


def signed_in(app: Flask, user: str = "a-admin", password: str = "a-admin-secret") -> FlaskClient:
    client = app.test_client()
    login(client, user, password)
    return client


def app_for(factory: sessionmaker) -> Flask:
    return create_app(SETTINGS, factory)
