"""Tenants, API keys (only hashes are stored) and the authenticated principal."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memsvc.errors import Conflict, Forbidden, NotFound, Unauthorized
from memsvc.models import ApiKey, Tenant

KEY_PREFIX = "msk_"
DEFAULT_TENANT = "default"
_TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key of one tenant, its scopes and optional restriction to some users/agents."""

    tenant_id: uuid.UUID
    key_id: uuid.UUID | None
    scopes: frozenset[str]
    user_ids: tuple[str, ...] | None = None
    agent_ids: tuple[str, ...] | None = None

    def require(self, scope: str) -> None:
        # admin implies write implies read; root implies everything.
        implied = {"read": {"read", "write", "admin", "root"}, "write": {"write", "admin", "root"},
                   "admin": {"admin", "root"}, "root": {"root"}}[scope]
        if not self.scopes & implied:
            raise Forbidden(f"this key lacks the '{scope}' scope", details={"required": scope})


def hash_key(plaintext: str) -> str:
    # Keys are 256-bit random secrets, so a fast hash is enough (no dictionary to defend against).
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def authenticate(session: Session, plaintext: str | None) -> Principal:
    if not plaintext:
        raise Unauthorized("missing API key; send 'Authorization: Bearer <key>'")
    key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
    if key is None:
        raise Unauthorized("invalid API key")
    if key.revoked_at is not None:
        raise Unauthorized("this API key has been revoked")
    now = datetime.now(UTC)
    if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
        session.commit()
    return Principal(
        tenant_id=key.tenant_id,
        key_id=key.id,
        scopes=frozenset(key.scopes),
        user_ids=tuple(key.user_ids) if key.user_ids is not None else None,
        agent_ids=tuple(key.agent_ids) if key.agent_ids is not None else None,
    )


def create_tenant(session: Session, name: str) -> Tenant:
    tenant = Tenant(id=uuid.uuid4(), name=name, policy={})
    session.add(tenant)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"a tenant named {name!r} already exists") from None
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.created_at)))


def get_tenant(session: Session, tenant_id: uuid.UUID) -> Tenant:
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} not found")
    return tenant


def create_key(
    session: Session,
    tenant_id: uuid.UUID,
    scopes: list[str],
    *,
    name: str = "",
    user_ids: list[str] | None = None,
    agent_ids: list[str] | None = None,
    plaintext: str | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored."""
    get_tenant(session, tenant_id)
    plaintext = plaintext or generate_key()
    key = ApiKey(
        id=uuid.uuid4(), tenant_id=tenant_id, name=name, prefix=plaintext[:10], key_hash=hash_key(plaintext),
        scopes=sorted(set(scopes)), user_ids=user_ids, agent_ids=agent_ids,
    )
    session.add(key)
    session.flush()
    return key, plaintext


def list_keys(session: Session, tenant_id: uuid.UUID) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).where(ApiKey.tenant_id == tenant_id).order_by(ApiKey.created_at)))


def revoke_key(session: Session, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id))
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
    session.flush()
    return key


def bootstrap(session: Session, admin_key: str | None = None) -> str | None:
    """Make sure a default tenant and one root key exist. Returns a new key's secret, once, or None."""
    tenant = session.scalar(select(Tenant).where(Tenant.name == DEFAULT_TENANT))
    if tenant is None:
        tenant = create_tenant(session, DEFAULT_TENANT)
    if admin_key:
        if session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(admin_key))) is None:
            create_key(session, tenant.id, ["root"], name="admin (from MEMSVC_ADMIN_KEY)", plaintext=admin_key)
        session.commit()
        return None
    has_root = session.scalar(
        select(ApiKey.id).where(ApiKey.scopes.contains(["root"]), ApiKey.revoked_at.is_(None)).limit(1)
    )
    if has_root:
        session.commit()
        return None
    _, secret = create_key(session, tenant.id, ["root"], name="admin (generated on first start)")
    session.commit()
    return secret
