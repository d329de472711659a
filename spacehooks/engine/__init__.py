"""Container engines behind one interface of plain data: Podman today (engine/podman*), a
Kubernetes cluster with `engine: kubernetes`."""
from spacehooks.engine.base import (BuildFailed, BuildStopped, Engine, EngineError, NotFound, ServiceLost,  # noqa: F401
                                    Unreachable, get)
from spacehooks.engine.outage import Outage  # noqa: F401
from spacehooks.engine.spec import (BuildRequest, BuildResult, ContainerState, ContainerStats,  # noqa: F401
                                    DataMount, EngineInfo, FileMount, IdMap, ImageInfo, NetworkInfo,
                                    Readiness, RunSpec)
