"""Named dependency types: handlers say which parameters Litestar injects."""

from typing import TypeAlias

from litestar.di import NamedDependency

from application.use_cases.sessions import Principal
from entrypoints.composition import Container

ContainerDep: TypeAlias = NamedDependency[Container]
PrincipalDep: TypeAlias = NamedDependency[Principal]
OptionalPrincipalDep: TypeAlias = NamedDependency[Principal | None]
