"""/v1/admin: tenants (root keys) and API keys (admin keys for their own tenant, root for any)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from api.deps import KeyId, get_session, requires
from api.openapi import errors
from memsvc import tenancy
from memsvc.schemas import KeyCreate, KeyCreated, KeyOut, TenantCreate, TenantOut
from memsvc.store import parse_uuid
from memsvc.tenancy import Principal
from memsvc.views import key_out

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.post("/tenants", status_code=201, response_model=TenantOut,
             responses=errors(conflict="A tenant with this name exists."))
def create_tenant(
    body: TenantCreate, _: Principal = Depends(requires("root")), session: Session = Depends(get_session)
) -> TenantOut:
    tenant = tenancy.create_tenant(session, body.name)
    session.commit()
    return TenantOut(id=tenant.id, name=tenant.name, created_at=tenant.created_at)


@router.get("/tenants", response_model=list[TenantOut])
def list_tenants(_: Principal = Depends(requires("root")), session: Session = Depends(get_session)) -> list[TenantOut]:
    return [TenantOut(id=t.id, name=t.name, created_at=t.created_at) for t in tenancy.list_tenants(session)]


@router.post("/keys", status_code=201, response_model=KeyCreated, responses=errors(404), description=(
    "Create an API key. The secret is in the response once; only its hash is kept."
))
def create_key(
    body: KeyCreate, principal: Principal = Depends(requires("admin")), session: Session = Depends(get_session)
) -> KeyCreated:
    tenant_id = body.tenant_id or principal.tenant_id
    if tenant_id != principal.tenant_id or "root" in body.scopes:
        principal.require("root")
    key, secret = tenancy.create_key(
        session, tenant_id, list(body.scopes), name=body.name, user_ids=body.user_ids, agent_ids=body.agent_ids
    )
    session.commit()
    return KeyCreated(**key_out(key).model_dump(), key=secret)


@router.get("/keys", response_model=list[KeyOut])
def list_keys(
    principal: Principal = Depends(requires("admin")), session: Session = Depends(get_session)
) -> list[KeyOut]:
    return [key_out(k) for k in tenancy.list_keys(session, principal.tenant_id)]


@router.delete("/keys/{key_id}", response_model=KeyOut, responses=errors(
    404, conflict="The last active admin key of its tenant, or the last root key: create another first."))
def revoke_key(
    key_id: KeyId, principal: Principal = Depends(requires("admin")), session: Session = Depends(get_session)
) -> KeyOut:
    key = tenancy.revoke_key(session, principal.tenant_id, parse_uuid(key_id, "key id"))
    session.commit()
    return key_out(key)
