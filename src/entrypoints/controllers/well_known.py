"""Public keys that verify access tokens (cacheable: they change only on rotation)."""

from litestar import Controller, Response, get

from entrypoints.http.dependencies import ContainerDep


class WellKnownController(Controller):
    path = "/.well-known"
    tags = ["keys"]
    opt = {"public": True}

    @get("/jwks.json", operation_id="jwks", summary="Public keys verifying access tokens.")
    async def jwks(self, container: ContainerDep) -> Response[dict[str, list[dict[str, str]]]]:
        return Response(container.tokens.jwks(), headers={"cache-control": "public, max-age=300"})
