"""Permanent deletion of an account from the admin panel (under its prefix, see admin_panel):
the closure pipeline, confirmed by a token bound to the summary the administrator was shown."""

from typing import Any
from uuid import UUID

from litestar import Controller, Request, Response, delete, post
from litestar.di import Provide
from litestar.params import FromPath, JSONBody

from entrypoints.controllers.admin_auth import AdminDep
from entrypoints.dto.admin import DeleteUserRequest, DeletionSummaryView, DeletionTokenResponse
from entrypoints.http.admin_auth import provide_admin, require_admin
from entrypoints.http.dependencies import ContainerDep
from entrypoints.http.request_context import request_context

_NO_STORE = {"cache-control": "no-store"}


class AdminUserDeletionController(Controller):
    path = "/users"
    tags = ["admin"]
    guards = [require_admin]
    dependencies = {"admin": Provide(provide_admin)}

    @post(
        "/{user_id:uuid}/deletion-token",
        status_code=200,
        operation_id="adminUserDeletionToken",
        summary="What deleting this account removes, and a five-minute, single-use token to confirm it.",
    )
    async def deletion_token(
        self,
        user_id: FromPath[UUID],
        admin: AdminDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> Response[DeletionTokenResponse]:
        issued = await container.closures.issue_deletion_token(admin, user_id, request_context(request))
        body = DeletionTokenResponse(
            confirmation_token=issued.token,
            expires_at=issued.expires_at,
            summary=DeletionSummaryView(**issued.summary),
        )
        return Response(body, headers=_NO_STORE)

    @delete(
        "/{user_id:uuid}",
        status_code=204,
        operation_id="adminDeleteUser",
        summary="Permanently delete an account (the closure pipeline), with its confirmation token.",
    )
    async def delete_user(
        self,
        user_id: FromPath[UUID],
        data: JSONBody[DeleteUserRequest],
        admin: AdminDep,
        container: ContainerDep,
        request: Request[Any, Any, Any],
    ) -> None:
        await container.closures.delete_user(
            admin, user_id, data.confirmation_token, request_context(request)
        )
