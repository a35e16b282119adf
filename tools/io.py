"""Multimodal values tools pass to each other by reference: :class:`ImageIO`, :class:`AudioIO`, :class:`File`.

A tool returns an image (a PIL image, a numpy array, bytes, or a path); the agent saves it once in the artifact
store and the model sees only its path (``[image: …/3fa2c9b1e0d4a7f2.png]``). When the model passes that path — or
just the file name — to the next tool, the parameter typed ``ImageIO`` turns it back into the object. Conversion is
lazy: a path is not opened until a tool asks for pixels or bytes.

Artifacts live in ``$AGENTKIT_ARTIFACTS``, else ``$AGENTKIT_HOME/artifacts``, else the user cache dir. Files are named
by a hash of their content, so saving the same image twice stores it once and names are safe to show to a model.
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
import tempfile
import wave
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic_core import core_schema

from agentkit.messages import AudioPart, ContentPart, FilePart, ImagePart

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image


def default_artifact_dir() -> Path:
    """Where tools' files are kept unless a tool is given its own directory."""
    if os.environ.get("AGENTKIT_ARTIFACTS"):
        return Path(os.environ["AGENTKIT_ARTIFACTS"]).expanduser()
    if os.environ.get("AGENTKIT_HOME"):
        return Path(os.environ["AGENTKIT_HOME"]).expanduser() / "artifacts"
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("agentkit")) / "artifacts"


def save_artifact(data: bytes, suffix: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """Write ``data`` atomically under a content-hash name and return its path (an existing copy is reused)."""
    root = Path(directory) if directory is not None else default_artifact_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    if path.exists() and path.stat().st_size == len(data):
        return path
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def resolve_reference(ref: str, directory: str | os.PathLike[str] | None = None) -> Path:
    """A path the model wrote — absolute, relative, ``file://`` or a bare artifact name — to an existing file."""
    text = ref.strip().strip("`'\"[]")
    for prefix in ("image:", "audio:", "file:"):
        if text.startswith(prefix) and not text.startswith("file://"):
            text = text[len(prefix):].strip()
    if text.startswith("file://"):
        text = text[len("file://"):]
    path = Path(text).expanduser()
    if path.is_file():
        return path
    store = Path(directory) if directory is not None else default_artifact_dir()
    candidate = store / path.name
    if path.name and candidate.is_file():
        return candidate
    raise ValueError(
        f"no file at {ref!r}: pass a path that exists, or the path an earlier tool returned (e.g. {store}/<name>.png)"
    )


class IOType:
    """A file-like value that converts lazily between a path, bytes and in-memory objects.

    Subclasses name their ``kind`` (what the model is told it is) and the suffix used when they are saved.
    """

    kind: ClassVar[str] = "file"
    default_suffix: ClassVar[str] = ".bin"

    def __init__(self, value: Any, *, mime_type: str | None = None, name: str | None = None):
        if isinstance(value, IOType):
            self._path, self._bytes, self._obj = value._path, value._bytes, value._obj
            mime_type = mime_type or value._mime
            name = name or value.name
        else:
            self._path: Path | None = None
            self._bytes: bytes | None = None
            self._obj: Any = None
            if isinstance(value, (str, os.PathLike)):
                self._path = resolve_reference(os.fspath(value))
            elif isinstance(value, (bytes, bytearray, memoryview)):
                self._bytes = bytes(value)
            else:
                self._obj = self._check_object(value)
        self._mime = mime_type
        self.name = name or (self._path.name if self._path is not None else None)

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def from_path(cls, path: str | os.PathLike[str]) -> IOType:
        return cls(Path(path))

    @classmethod
    def from_bytes(cls, data: bytes, *, mime_type: str | None = None, name: str | None = None) -> IOType:
        return cls(data, mime_type=mime_type, name=name)

    def _check_object(self, value: Any) -> Any:
        raise TypeError(
            f"{type(self).__name__} takes a path, bytes or another {type(self).__name__}, not {type(value).__name__}"
        )

    # -- views -------------------------------------------------------------------------------
    @property
    def suffix(self) -> str:
        if self._path is not None and self._path.suffix:
            return self._path.suffix.lower()
        if self._mime:
            return mimetypes.guess_extension(self._mime) or self.default_suffix
        return self.default_suffix

    @property
    def mime_type(self) -> str:
        return self._mime or mimetypes.guess_type(f"x{self.suffix}")[0] or "application/octet-stream"

    def to_bytes(self) -> bytes:
        if self._bytes is None:
            if self._path is not None:
                self._bytes = self._path.read_bytes()
            else:
                self._bytes = self._encode(self._obj)
        return self._bytes

    def _encode(self, obj: Any) -> bytes:
        raise NotImplementedError(f"{type(self).__name__} cannot encode {type(obj).__name__}")

    def to_path(self, directory: str | os.PathLike[str] | None = None) -> Path:
        """The file behind the value, written to the artifact store the first time it is needed."""
        if self._path is None:
            self._path = save_artifact(self.to_bytes(), self.suffix, directory)
        return self._path

    @property
    def path(self) -> Path:
        return self.to_path()

    def to_part(self, directory: str | os.PathLike[str] | None = None) -> ContentPart:
        """What a message carries: a reference the model can read and pass on."""
        return FilePart(path=str(self.to_path(directory)), mime_type=self.mime_type, name=self.name)

    def __fspath__(self) -> str:
        return str(self.to_path())

    def __str__(self) -> str:
        return str(self.to_path())

    def __repr__(self) -> str:
        where = str(self._path) if self._path is not None else ("bytes" if self._bytes is not None else "object")
        return f"{type(self).__name__}({where})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IOType) and type(other) is type(self) and other.to_bytes() == self.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    # -- pydantic ----------------------------------------------------------------------------
    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def coerce(value: Any) -> IOType:
            if isinstance(value, cls):
                return value
            return cls(value)

        return core_schema.no_info_plain_validator_function(
            coerce,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda v: str(v.to_path())),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {"type": "string", "description": f"path of {cls._article()} {cls.kind} file", "format": cls.kind}

    @classmethod
    def _article(cls) -> str:
        return "an" if cls.kind[0] in "aeiou" else "a"


class File(IOType):
    """Any file: a document, a CSV, an archive."""


class ImageIO(IOType):
    """An image: from a path, encoded bytes, a PIL image or an ``HxW`` / ``HxWxC`` uint8 numpy array."""

    kind = "image"
    default_suffix = ".png"

    def _check_object(self, value: Any) -> Any:
        module = type(value).__module__
        if module.startswith("PIL.") or module.startswith("numpy"):
            return value
        return super()._check_object(value)

    @property
    def suffix(self) -> str:
        if self._path is None and self._bytes is None:
            return ".png"  # in-memory images are saved as PNG
        return super().suffix

    def to_pil(self) -> Image.Image:
        from PIL import Image

        if self._obj is not None and not type(self._obj).__module__.startswith("numpy"):
            return self._obj
        if self._obj is not None:
            return Image.fromarray(self._obj)
        image = Image.open(io.BytesIO(self.to_bytes()))
        image.load()
        return image

    def to_array(self) -> np.ndarray:
        import numpy as np

        if self._obj is not None and type(self._obj).__module__.startswith("numpy"):
            return self._obj
        return np.asarray(self.to_pil())

    def _encode(self, obj: Any) -> bytes:
        buffer = io.BytesIO()
        self.to_pil().save(buffer, format="PNG")
        return buffer.getvalue()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height); an image from a file or bytes is read from its header, without decoding the pixels."""
        if self._obj is None:
            from PIL import Image

            with Image.open(io.BytesIO(self.to_bytes())) as image:
                return image.size
        return self.to_pil().size

    def to_part(self, directory: str | os.PathLike[str] | None = None) -> ContentPart:
        return ImagePart(url=str(self.to_path(directory)))


class AudioIO(IOType):
    """Audio: from a path, encoded bytes, or a mono/stereo numpy array with its ``sample_rate`` (saved as WAV)."""

    kind = "audio"
    default_suffix = ".wav"

    def __init__(self, value: Any, *, sample_rate: int | None = None, mime_type: str | None = None,
                 name: str | None = None):
        self.sample_rate = sample_rate if sample_rate is not None else getattr(value, "sample_rate", None)
        super().__init__(value, mime_type=mime_type, name=name)
        if self._obj is not None and self.sample_rate is None:
            raise ValueError("AudioIO from an array needs sample_rate=... (samples per second)")

    def _check_object(self, value: Any) -> Any:
        if type(value).__module__.startswith("numpy"):
            return value
        return super()._check_object(value)

    @property
    def suffix(self) -> str:
        if self._path is None and self._bytes is None:
            return ".wav"
        return super().suffix

    def _encode(self, obj: Any) -> bytes:
        import numpy as np

        samples = np.asarray(obj)
        if samples.dtype.kind == "f":
            samples = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
        else:
            samples = samples.astype("<i2")
        channels = 1 if samples.ndim == 1 else samples.shape[1]
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(channels)
            out.setsampwidth(2)
            out.setframerate(int(self.sample_rate or 16000))
            out.writeframes(samples.tobytes())
        return buffer.getvalue()

    def to_array(self) -> np.ndarray:
        """Samples as float32 in [-1, 1] (shape ``(n,)`` or ``(n, channels)``); reads WAV files."""
        import numpy as np

        if self._obj is not None:
            return np.asarray(self._obj)
        with wave.open(io.BytesIO(self.to_bytes()), "rb") as src:
            if src.getsampwidth() != 2:
                raise ValueError(f"only 16-bit PCM WAV can be decoded here, got {8 * src.getsampwidth()}-bit")
            self.sample_rate = src.getframerate()
            channels = src.getnchannels()
            frames = np.frombuffer(src.readframes(src.getnframes()), dtype="<i2")
        samples = frames.astype(np.float32) / 32767
        return samples if channels == 1 else samples.reshape(-1, channels)

    def to_part(self, directory: str | os.PathLike[str] | None = None) -> ContentPart:
        return AudioPart(url=str(self.to_path(directory)), format=self.suffix.lstrip(".") or None)


IO_TYPES: tuple[type[IOType], ...] = (ImageIO, AudioIO, File)
