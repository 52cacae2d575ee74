"""Resolve a container (image, command, args) to a local argv via the checked-in image map."""

from __future__ import annotations

import fnmatch
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..toolchain import TOOLS, ToolError, java_binary, path_of, postgres_bindir

IMAGE_MAP = Path(__file__).resolve().parents[1] / "images.yaml"


class ImageError(Exception):
    """The image cannot run on this node; the message is the pod status message."""


@dataclass(frozen=True)
class ImageMap:
    entries: tuple[dict, ...]

    @classmethod
    def load(cls, path: Path = IMAGE_MAP) -> "ImageMap":
        return cls(tuple(yaml.safe_load(path.read_text())["images"]))

    def argv(self, image: str, command: list[str] | None, args: list[str] | None) -> list[str]:
        entry = self._entry(image)
        if "error" in entry:
            raise ImageError(f"image {image!r} cannot run on the local node: {entry['error']}")
        entrypoint = [_expand(x) for x in entry.get("entrypoint", [])]
        if command:
            # A program the image has under a name that means something else on the node's PATH (our
            # temporal-server image's binary, where PATH finds the stock build): the entry's `commands` map.
            program = (entry.get("commands") or {}).get(command[0])
            argv = [_expand(program) if program else _expand_first(command[0]), *command[1:], *(args or [])]
        else:
            argv = [*entrypoint, *(args if args is not None else [_expand(x) for x in entry.get("cmd", [])])]
        if not argv:
            raise ImageError(f"image {image!r}: the container sets no command and the image map no entrypoint")
        return argv

    def programs(self, image: str) -> dict[str, str]:
        """Binaries the image has on its PATH under names the node's PATH gives another build (admin-tools:1.32's
        temporal-sql-tool, called from a shell script): name -> local program, put first on the container's PATH."""
        entry = self._entry(image)
        return {name: _expand(program) for name, program in (entry.get("programs") or {}).items()}

    def _entry(self, image: str) -> dict:
        reference = image if ":" in image.rsplit("/", 1)[-1] else f"{image}:latest"
        for entry in self.entries:
            if fnmatch.fnmatchcase(reference, entry["image"]) or fnmatch.fnmatchcase(image, entry["image"]):
                return entry
        raise ImageError(f"image {image!r} is not in the local image map ({IMAGE_MAP.name}): "
                         "add an entry that maps it to a local program")


def search_path() -> list[str]:
    """Directories every container's PATH starts with: the venv, then the cached tools."""
    dirs = [str(Path(sys.executable).parent)]
    for tool in TOOLS:
        for binary in tool.binaries:
            directory = str(path_of(binary, ensure=False).parent)
            if directory not in dirs:
                dirs.append(directory)
    return dirs


def _expand(value: str) -> str:
    try:
        if value == "{python}":
            return sys.executable
        if value == "{java}":
            return str(java_binary())
        if value == "{postgres}":
            return str(postgres_bindir())
        if value.startswith("{localkube:") and value.endswith("}"):
            return str(IMAGE_MAP.parent / value[11:-1])
        if value.startswith("{tool:") and value.endswith("}"):
            return str(path_of(value[6:-1]))
    except ToolError as error:  # a tool this machine cannot build: the pod says why, as a failed pull would
        raise ImageError(str(error)) from None
    return value


def _expand_first(program: str) -> str:
    """A bare `python`/`python3` in a container command means the project's environment."""
    return sys.executable if program in ("python", "python3") else _expand(program)
