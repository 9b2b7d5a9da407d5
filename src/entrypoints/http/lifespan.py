"""The lifespan both apps give Litestar: start the container's background pieces, stop them all."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol

from litestar import Litestar


class Startable(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def container_lifespan(container: Startable) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifecycle(_: Litestar) -> AsyncIterator[None]:
        await container.start()
        try:
            yield
        finally:
            await container.stop()

    return lifecycle
