"""The agent's docker-py client: docker-py's own, without the container inspects a job does not need.

docker-py asks the engine about a container behind two of the calls the agent makes per job:
``containers.create`` inspects the container it just created (to return a model object the agent
only takes the id of), and every ``logs`` read inspects the container for its ``Tty`` setting
(which decides how the stream is framed). A job reads its logs twice (the follow stream, then the
catch-up read after the exit), so three of a job's ~13 API calls answered nothing new.

:class:`AgentDockerClient` is ``docker.DockerClient`` with an API client that remembers the ``tty``
setting of each container it created and answers the log read's question from it; a container it
did not create (one adopted after a restart) is inspected as before. :func:`create_container`
creates from the same keyword arguments as ``containers.create``, through the low-level
``create_container`` (the same request), and returns the id without the inspect.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

import docker
from docker.models.containers import RUN_CREATE_KWARGS, RUN_HOST_CONFIG_KWARGS

#: ``containers.create`` keywords that docker-py spreads over the create and the host config itself;
#: a spec with any of them goes through ``containers.create`` (the agent's own specs have none).
_SPLIT_KWARGS = frozenset({"ports", "volumes", "network", "networking_config"})


class AgentAPIClient(docker.APIClient):
    """docker-py's API client that knows the ``tty`` setting of the containers it created."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: container id -> its ``tty`` setting; an entry goes when the container is removed.
        self.tty_of: Dict[str, bool] = {}

    def _check_is_tty(self, container: str) -> bool:
        """docker-py's question before it frames a log stream; inspects only a container not created here."""
        known = self.tty_of.get(container)
        if known is None:
            return bool(super()._check_is_tty(container))
        return known

    def forget(self, container_id: str) -> None:
        """The container is removed: drop what was known about it."""
        self.tty_of.pop(container_id, None)


class AgentDockerClient(docker.DockerClient):
    """``docker.DockerClient`` (``from_env`` included) whose ``api`` is an :class:`AgentAPIClient`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.api = AgentAPIClient(*args, **kwargs)


def create_container(client: docker.DockerClient, image: str, spec: Mapping[str, Any]) -> str:
    """Create a container from ``containers.create``'s keyword arguments; returns its id.

    The same request as ``containers.create`` (docker-py's own split of the keywords into the create
    and the host config), without the inspect of the new container; ``docker.errors`` as it raises them.
    """
    if _SPLIT_KWARGS & spec.keys():
        return str(client.containers.create(image, **spec).id)
    api = client.api
    unknown = [key for key in spec if key not in RUN_CREATE_KWARGS and key not in RUN_HOST_CONFIG_KWARGS]
    if unknown:
        raise docker.errors.create_unexpected_kwargs_error("run", {key: spec[key] for key in unknown})
    create = {key: value for key, value in spec.items() if key in RUN_CREATE_KWARGS}
    host_config = api.create_host_config(**{key: value for key, value in spec.items() if key in RUN_HOST_CONFIG_KWARGS})
    container_id = str(api.create_container(image, host_config=host_config, **create)["Id"])
    if isinstance(api, AgentAPIClient):
        api.tty_of[container_id] = bool(create.get("tty"))
    return container_id
