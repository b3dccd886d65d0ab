"""Tenants, API keys (only hashes are stored) and the authenticated principal."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Select, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from memsvc.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from memsvc.models import ApiKey, Tenant

KEY_PREFIX = "msk_"
ADMIN_SCOPES = frozenset({"admin", "root"})
_REVOKE_LOCK = 0x6D656D7376636B  # pg advisory lock id serialising key revocations ("memsvck")
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

    @property
    def restriction(self) -> str | None:
        """The key's restriction in words ("user_ids alice, bob"), None for a key of the whole tenant."""
        return describe_restriction(self.user_ids, self.agent_ids)

    def require(self, scope: str) -> None:
        # admin implies write implies read; root implies everything.
        implied = {"read": {"read", "write", "admin", "root"}, "write": {"write", "admin", "root"},
                   "admin": {"admin", "root"}, "root": {"root"}}[scope]
        if not self.scopes & implied:
            raise Forbidden(f"this key lacks the '{scope}' scope", details={"required": scope})
        # What admin and root do (keys, tenant policies, tenant-wide jobs) reaches every user of the tenant.
        if scope in ADMIN_SCOPES and self.restriction is not None:
            raise Forbidden(
                f"this key is restricted to {self.restriction}; the '{scope}' scope acts on the whole tenant "
                "(keys, policies, maintenance) and needs a key without user or agent restrictions",
                details={"required": scope, "user_ids": self.user_ids, "agent_ids": self.agent_ids},
            )


def describe_restriction(user_ids: Sequence[str] | None, agent_ids: Sequence[str] | None) -> str | None:
    parts = [f"{name} {', '.join(values)}" for name, values in (("user_ids", user_ids), ("agent_ids", agent_ids))
             if values is not None]
    return " and ".join(parts) or None


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
    restriction = describe_restriction(user_ids, agent_ids)
    if restriction is not None and ADMIN_SCOPES & set(scopes):
        raise InvalidInput(
            f"a key restricted to {restriction} cannot have the admin or root scope (they act on the whole "
            "tenant); give it read and/or write, or drop the restriction", details={"field": "scopes"})
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


def keys_by_tenant(session: Session, tenant_id: uuid.UUID | None = None) -> list[tuple[str, ApiKey]]:
    """(tenant name, key) for every key, or one tenant's, by tenant name then age (the operator's listing)."""
    query = select(Tenant.name, ApiKey).join(Tenant, Tenant.id == ApiKey.tenant_id)
    if tenant_id is not None:
        query = query.where(ApiKey.tenant_id == tenant_id)
    return [(name, key) for name, key in session.execute(query.order_by(Tenant.name, ApiKey.created_at)).all()]


def key_tenant(session: Session, key_id: uuid.UUID) -> uuid.UUID | None:
    """The tenant a key belongs to (None: no such key)."""
    return session.scalar(select(ApiKey.tenant_id).where(ApiKey.id == key_id))


def revoke_key(session: Session, tenant_id: uuid.UUID, key_id: uuid.UUID) -> ApiKey:
    """Revoke a key of `tenant_id`. Refused (409) for the last active key that can administer its tenant, and
    for the last active root key: nobody could make new keys then. Revocations run one at a time, so two at
    once cannot remove the last two."""
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _REVOKE_LOCK})
    key = session.scalar(select(ApiKey).where(ApiKey.id == key_id, ApiKey.tenant_id == tenant_id))
    if key is None:
        raise NotFound(f"API key {key_id} not found")
    if key.revoked_at is None:
        _keep_an_administrator(session, key)
        key.revoked_at = datetime.now(UTC)
    session.flush()
    return key


def _administrators(key_id: uuid.UUID, scope: str) -> Select[tuple[uuid.UUID]]:
    """Other active keys of the whole tenant (no restriction) holding `scope`."""
    return select(ApiKey.id).where(ApiKey.id != key_id, ApiKey.revoked_at.is_(None), ApiKey.user_ids.is_(None),
                                   ApiKey.agent_ids.is_(None), ApiKey.scopes.contains([scope])).limit(1)


def _keep_an_administrator(session: Session, key: ApiKey) -> None:
    if key.user_ids is not None or key.agent_ids is not None or not ADMIN_SCOPES & set(key.scopes):
        return  # it administers nothing
    if "root" in key.scopes and session.scalar(_administrators(key.id, "root")) is None:
        raise Conflict("this is the last active root key; create another root key before revoking it",
                       code="last_root_key", details={"key_id": str(key.id)})
    tenant_admins = [_administrators(key.id, scope).where(ApiKey.tenant_id == key.tenant_id)
                     for scope in ADMIN_SCOPES]
    if all(session.scalar(query) is None for query in tenant_admins):
        raise Conflict("this is the last active admin key of its tenant; create another admin key before "
                       "revoking it", code="last_admin_key", details={"key_id": str(key.id)})


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
