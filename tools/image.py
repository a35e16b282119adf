"""Image tools on the CPU: ``image_info``, ``crop``, ``resize``, ``draw_boxes``, ``annotate`` and ``plot``.

They take and return images by reference (:class:`~agentkit.tools.io.ImageIO`): a tool's result is saved once in
the artifact store, the model sees its path, and passing that path to the next tool gives the image back. So a
model can chain ``plot`` → ``resize`` → ``crop`` → ``image_info`` without ever holding pixels.

Coordinates are in pixels, or 0–1 fractions of the width and height when every number is between 0 and 1 (small
models often think in fractions). Boxes and points outside the image are refused with the image's size, rather
than clamped, so the model learns the real extent. Photos are turned upright from their EXIF orientation first,
so sizes and coordinates match what a viewer shows. Charts are drawn with matplotlib's object API on an Agg
canvas — no pyplot, so no global figure state to leak or share between threads.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field

from agentkit.toolspec import ToolError
from agentkit.tools.base import BaseTool
from agentkit.tools.io import ImageIO

if TYPE_CHECKING:
    from PIL import Image

MAX_SIDE = 10_000
MAX_POINTS = 10_000
MAX_TEXT = 500
PALETTE = ("red", "lime", "blue", "yellow", "magenta", "cyan", "orange", "white")
_SAVEABLE_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}

Position = Literal["top-left", "top", "top-right", "left", "center", "right", "bottom-left", "bottom", "bottom-right"]
POSITIONS: tuple[str, ...] = Position.__args__  # type: ignore[attr-defined]
_POSITION_WORDS = {"middle": "center", "centre": "center", "upper": "top", "lower": "bottom"}


def _position(value: Any) -> Any:
    """Accept "top left", "Top_Left", "upper-left", "middle"; refuse other words with the list of names."""
    if not isinstance(value, str):
        return value
    words = value.strip().lower().replace("_", " ").replace("-", " ").split()
    name = "-".join(_POSITION_WORDS.get(w, w) for w in words)
    name = {"center-left": "left", "center-right": "right", "top-center": "top", "bottom-center": "bottom",
            "center-center": "center"}.get(name, name)
    if name not in POSITIONS:
        raise ValueError(f"unknown position {value!r}: use {', '.join(POSITIONS)}, or [x, y]")
    return name


# -- shared helpers ---------------------------------------------------------------------------------

def open_image(image: ImageIO) -> Image.Image:
    """The pixels behind ``image``, upright, or a ToolError naming the file that is not a readable image."""
    return upright(read_image(image))


def read_image(image: ImageIO) -> Image.Image:
    """The image as stored (its ``format`` still set), or a ToolError saying what to pass instead."""
    from PIL import Image, UnidentifiedImageError

    where = image.name or "the file"
    try:
        return image.to_pil()
    except Image.DecompressionBombError:
        raise ToolError(f"{where} has too many pixels to open safely; use a smaller image") from None
    except UnidentifiedImageError:
        raise ToolError(f"{where} is not an image that can be read: pass the path of a PNG, JPEG, GIF, BMP or WebP "
                        "file, such as one an earlier tool returned") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise ToolError(f"{where} could not be read as an image ({exc}); pass the path of a PNG or JPEG") from None


def upright(picture: Image.Image) -> Image.Image:
    """Apply the EXIF orientation a camera recorded, as viewers do."""
    from PIL import ImageOps

    return ImageOps.exif_transpose(picture) or picture


def result(picture: Image.Image) -> ImageIO:
    """Wrap a new picture for returning; modes PNG cannot store (CMYK, YCbCr...) become RGB."""
    if picture.mode not in _SAVEABLE_MODES:
        picture = picture.convert("RGBA" if "A" in picture.getbands() else "RGB")
    return ImageIO(picture)


def _is_fraction(values: Sequence[float]) -> bool:
    return all(0 <= v <= 1 for v in values)


def box_pixels(box: Sequence[float], size: tuple[int, int], what: str = "box") -> tuple[int, int, int, int]:
    """``[left, top, right, bottom]`` in pixels or 0–1 fractions as a pixel box inside an image of ``size``."""
    if len(box) != 4:
        raise ToolError(f"{what} needs 4 numbers [left, top, right, bottom], got {len(box)}: {list(box)}")
    if not all(math.isfinite(v) for v in box):
        raise ToolError(f"{what} {list(box)} has a value that is not a number")
    width, height = size
    if _is_fraction(box):
        left, top, right, bottom = (round(v * s) for v, s in zip(box, (width, height, width, height)))
    else:
        left, top, right, bottom = (round(v) for v in box)
    shown = f"{what} {_fmt(box)}"
    if right <= left or bottom <= top:
        raise ToolError(f"{shown} is empty: right must be greater than left and bottom greater than top "
                        "(the order is [left, top, right, bottom])")
    if left < 0 or top < 0 or right > width or bottom > height:
        raise ToolError(f"{shown} goes outside the {width}x{height} image: keep left and right within 0..{width} "
                        f"and top and bottom within 0..{height} pixels, or use fractions from 0 to 1")
    return left, top, right, bottom


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


def parse_color(color: str | None, default: str) -> tuple[int, ...]:
    from PIL import ImageColor

    name = (color or default).strip()
    try:
        return ImageColor.getrgb(name)
    except ValueError:
        raise ToolError(f"unknown colour {name!r}: use a name such as red, green, blue, yellow, white, or a hex code "
                        "like #ff8800") from None


def _font(size: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _contrast(rgb: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``rgb``."""
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _drawable(image: ImageIO) -> Image.Image:
    """A copy to draw on, in a mode that takes colours (palette and grey images become RGB)."""
    picture = open_image(image)
    return picture.convert("RGBA" if "A" in picture.getbands() else "RGB")


# -- tools ------------------------------------------------------------------------------------------

class ImageInfo(BaseTool):
    """Tell the model what an image is before it crops or resizes it: size, mode, format, mean colour."""

    name = "image_info"
    timeout = 30.0

    def apply(self, image: ImageIO) -> str:
        """Describe an image: width and height in pixels, colour mode, file format and mean colour.
        Example: {"image": "/path/to/chart.png"}.

        Args:
            image: path of the image, e.g. one an earlier tool returned.
        """
        from PIL import ImageStat

        stored = read_image(image)
        file_format = stored.format or (image.suffix.lstrip(".").upper() or "unknown")
        picture = upright(stored)
        width, height = picture.size
        red, green, blue = (round(v) for v in ImageStat.Stat(picture.convert("RGB")).mean)
        return (f"size: {width}x{height} pixels (width x height)\nmode: {picture.mode}\nformat: {file_format}\n"
                f"mean colour: #{red:02x}{green:02x}{blue:02x} (rgb {red}, {green}, {blue})")


class Crop(BaseTool):
    """Cut out part of an image; the box may be in pixels or 0–1 fractions."""

    name = "crop"
    timeout = 30.0

    def apply(self, image: ImageIO, box: list[float]) -> ImageIO:
        """Cut a rectangle out of an image and return it as a new image.
        Example: {"image": "/path/to/photo.png", "box": [0, 0, 0.5, 0.5]} keeps the top-left quarter.

        Args:
            image: path of the image to crop.
            box: [left, top, right, bottom] in pixels (e.g. [10, 20, 200, 120]) or as fractions of the width
                and height from 0 to 1 (e.g. [0.25, 0.25, 0.75, 0.75]).
        """
        picture = open_image(image)
        return result(picture.crop(box_pixels(box, picture.size)))


class Resize(BaseTool):
    """Scale an image by a width, a height (aspect kept) or a factor."""

    name = "resize"
    timeout = 30.0

    def apply(self, image: ImageIO, width: int | None = None, height: int | None = None,
              scale: float | None = None) -> ImageIO:
        """Resize an image. Give width or height (the other follows the aspect ratio), both for an exact size,
        or scale. Example: {"image": "/path/to/photo.png", "width": 320}.

        Args:
            image: path of the image to resize.
            width: new width in pixels; alone, the height follows the aspect ratio.
            height: new height in pixels; alone, the width follows the aspect ratio.
            scale: a factor instead of a size, e.g. 0.5 for half size or 2 for double.
        """
        from PIL import Image

        if scale is not None and (width is not None or height is not None):
            raise ToolError("give either scale or width/height, not both: e.g. {\"scale\": 0.5} or {\"width\": 320}")
        if scale is None and width is None and height is None:
            raise ToolError("say how to resize: give width, height or scale, e.g. {\"width\": 320} or "
                            "{\"scale\": 0.5}")
        for label, value in (("width", width), ("height", height), ("scale", scale)):
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ToolError(f"{label} must be greater than 0, got {value}")
        picture = open_image(image)
        old_width, old_height = picture.size
        if scale is not None:
            size = (max(1, round(old_width * scale)), max(1, round(old_height * scale)))
        elif width is not None and height is not None:
            size = (width, height)
        elif width is not None:
            size = (width, max(1, round(old_height * width / old_width)))
        else:
            assert height is not None
            size = (max(1, round(old_width * height / old_height)), height)
        if max(size) > MAX_SIDE:
            raise ToolError(f"the result would be {size[0]}x{size[1]} pixels; at most {MAX_SIDE} on a side")
        if picture.mode in ("P", "1"):
            picture = picture.convert("RGBA" if "transparency" in picture.info else "RGB")
        return result(picture.resize(size, Image.Resampling.LANCZOS))


class LabelledBox(BaseModel):
    """One box for ``draw_boxes``."""

    model_config = ConfigDict(extra="forbid")

    box: list[float] = Field(validation_alias=AliasChoices("box", "bbox"),
                             description="[left, top, right, bottom] in pixels or 0-1 fractions")
    label: str | None = Field(default=None, validation_alias=AliasChoices("label", "text", "name"),
                              description="text written above the box")
    color: str | None = Field(default=None, validation_alias=AliasChoices("color", "colour"),
                              description="a colour name or hex code, e.g. red or #00ff00")


class DrawBoxes(BaseTool):
    """Outline regions of an image, with optional labels: how a model shows what it found."""

    name = "draw_boxes"
    timeout = 30.0

    def apply(self, image: ImageIO, boxes: list[LabelledBox | list[float]]) -> ImageIO:
        """Draw rectangles (with optional labels and colours) on an image and return the new image.
        Example: {"image": "/path/to/photo.png", "boxes": [{"box": [10, 10, 120, 80], "label": "cat"}]}.

        Args:
            image: path of the image to draw on.
            boxes: the boxes, each {"box": [left, top, right, bottom], "label": "text", "color": "red"}
                (label and color optional) or just [left, top, right, bottom]; pixels or 0-1 fractions.
        """
        from PIL import ImageDraw

        if not boxes:
            raise ToolError("boxes is empty: give at least one, e.g. "
                            "[{\"box\": [10, 10, 120, 80], \"label\": \"cat\"}]")
        if len(boxes) > 500:
            raise ToolError(f"too many boxes ({len(boxes)}; at most 500)")
        picture = _drawable(image)
        items = [b if isinstance(b, LabelledBox) else LabelledBox(box=b) for b in boxes]
        placed = [(box_pixels(item.box, picture.size, f"box {i + 1}"),
                   parse_color(item.color, PALETTE[i % len(PALETTE)]), item.label) for i, item in enumerate(items)]
        draw = ImageDraw.Draw(picture)
        line = max(2, round(min(picture.size) / 150))
        font = _font(max(12, round(min(picture.size) / 25)))
        for (left, top, right, bottom), rgb, label in placed:
            draw.rectangle((left, top, right - 1, bottom - 1), outline=rgb, width=line)
            if label:
                text = label[:MAX_TEXT]
                x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
                text_height = y1 - y0 + 4
                y = top - text_height if top - text_height >= 0 else top
                draw.rectangle((left, y, left + x1 - x0 + 6, y + text_height), fill=rgb)
                draw.text((left + 3 - x0, y + 2 - y0), text, fill=_contrast(rgb), font=font)
        return result(picture)


class Annotate(BaseTool):
    """Write text on an image, at a named place or a point, readable on any background."""

    name = "annotate"
    timeout = 30.0

    def apply(self, image: ImageIO, text: str,
              position: Annotated[Position | list[float], BeforeValidator(_position)] = "top-left",
              color: str = "white", size: int | None = None) -> ImageIO:
        """Write text on an image and return the new image.
        Example: {"image": "/path/to/photo.png", "text": "Total: 42", "position": "bottom-right"}.

        Args:
            image: path of the image to write on.
            text: the text to write (new lines allowed).
            position: where: top-left, top, top-right, left, center, right, bottom-left, bottom or bottom-right;
                or [x, y] for the text's top-left corner in pixels or 0-1 fractions.
            color: text colour, a name or hex code, e.g. "yellow" or "#ff0000"; drawn with a dark outline.
            size: font size in pixels (default: about 1/15 of the image height).
        """
        from PIL import ImageDraw

        if not text.strip():
            raise ToolError("text is empty: give the words to write, e.g. {\"text\": \"cat\"}")
        if len(text) > MAX_TEXT:
            raise ToolError(f"text is too long ({len(text)} characters; at most {MAX_TEXT})")
        if size is not None and not 4 <= size <= 1000:
            raise ToolError(f"size is the font height in pixels, from 4 to 1000; got {size}")
        picture = _drawable(image)
        width, height = picture.size
        rgb = parse_color(color, "white")
        font = _font(size or max(12, round(height / 15)))
        stroke = max(1, round(font.size / 12))
        draw = ImageDraw.Draw(picture)
        x0, y0, x1, y1 = draw.multiline_textbbox((0, 0), text, font=font, stroke_width=stroke)
        text_width, text_height = x1 - x0, y1 - y0
        if isinstance(position, str):
            margin = max(4, round(min(width, height) / 50))
            column, row = _anchor(position)
            x = (margin, (width - text_width) / 2, width - text_width - margin)[column]
            y = (margin, (height - text_height) / 2, height - text_height - margin)[row]
        else:
            x, y = _point(position, (width, height))
        draw.multiline_text((x - x0, y - y0), text, fill=rgb, font=font, stroke_width=stroke,
                            stroke_fill=_contrast(rgb))
        return result(picture)


def _anchor(position: str) -> tuple[int, int]:
    """(column, row) of a named position, each 0, 1 or 2."""
    row = 0 if position.startswith("top") else 2 if position.startswith("bottom") else 1
    column = 0 if position.endswith("left") else 2 if position.endswith("right") else 1
    return column, row


def _point(position: Sequence[float], size: tuple[int, int]) -> tuple[int, int]:
    if len(position) != 2:
        raise ToolError(f"position needs 2 numbers [x, y] or a name such as top-left; got {list(position)}")
    width, height = size
    x, y = position
    if _is_fraction(position):
        x, y = x * width, y * height
    if not (0 <= x < width and 0 <= y < height):
        raise ToolError(f"position {_fmt(position)} is outside the {width}x{height} image: use x within "
                        f"0..{width - 1} and y within 0..{height - 1}, fractions from 0 to 1, or a name like center")
    return round(x), round(y)


# -- plot -------------------------------------------------------------------------------------------

_DATA_KEYS = {"labels": "x", "label": "x", "categories": "x", "values": "y", "value": "y"}
DATA_FORMS = ('a list of numbers [3, 1, 4], {"x": [1, 2, 3], "y": [2, 4, 8]}, '
              '{"x": [...], "y": {"series A": [...], "series B": [...]}} or {"apples": 3, "pears": 5}')


class Plot(BaseTool):
    """Turn numbers the model has into a chart it (or the user) can look at."""

    name = "plot"
    timeout = 30.0

    def setup(self) -> None:
        import matplotlib.backends.backend_agg  # noqa: F401  (font cache and backend load once, outside the timer)

    def apply(self, data: dict[str, Any] | list[Any] | str, kind: Literal["line", "bar", "scatter", "pie"] = "line",
              title: str | None = None, xlabel: str | None = None, ylabel: str | None = None) -> ImageIO:
        """Draw a line, bar, scatter or pie chart from data and return it as an image (640x480 PNG).
        Example: {"data": {"x": [2021, 2022, 2023], "y": [5, 7, 12]}, "kind": "bar", "title": "Sales"}.

        Args:
            data: the numbers: a list [3, 1, 4]; {"x": [...], "y": [...]}; several series as
                {"x": [...], "y": {"name": [...], "other": [...]}}; or labels to values {"apples": 3, "pears": 5}.
            kind: line, bar, scatter or pie.
            title: title above the chart.
            xlabel: label of the x axis.
            ylabel: label of the y axis.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        xs, series = parse_plot_data(data)
        figure = Figure(figsize=(6.4, 4.8), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        if kind == "pie":
            if len(series) != 1:
                raise ToolError("a pie chart shows one series: give {\"label\": value, ...} or one list of values")
            [values] = series.values()
            if any(v < 0 for v in values) or not any(v > 0 for v in values):
                raise ToolError("a pie chart needs values of 0 or more, at least one above 0")
            axes.pie(values, labels=[_label(x) for x in xs], autopct="%1.1f%%", startangle=90, counterclock=False)
            axes.axis("equal")
        else:
            categorical = kind == "bar" or any(isinstance(x, str) for x in xs)
            positions = list(range(len(xs))) if categorical else xs
            count = len(series)
            bar_width = 0.8 / count
            for index, (name, values) in enumerate(series.items()):
                label = name if count > 1 else None
                if kind == "line":
                    axes.plot(positions, values, marker="o" if len(values) <= 30 else None, label=label)
                elif kind == "scatter":
                    axes.scatter(positions, values, label=label)
                else:
                    offsets = [p + (index - (count - 1) / 2) * bar_width for p in positions]
                    axes.bar(offsets, values, width=bar_width, label=label)
            if categorical:
                axes.set_xticks(positions, [_label(x) for x in xs], rotation=30 if len(xs) > 6 else 0)
            elif all(float(x).is_integer() for x in xs):
                axes.xaxis.set_major_locator(MaxNLocator(integer=True))
            if count > 1:
                axes.legend()
            axes.grid(True, alpha=0.3)
        if title:
            axes.set_title(title[:MAX_TEXT])
        if xlabel and kind != "pie":
            axes.set_xlabel(xlabel[:MAX_TEXT])
        if ylabel and kind != "pie":
            axes.set_ylabel(ylabel[:MAX_TEXT])
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        return ImageIO(buffer.getvalue(), mime_type="image/png")


def _label(x: float | str) -> str:
    return x if isinstance(x, str) else f"{x:g}"


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ToolError(f"{where} must be a number, got {json.dumps(value)}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.replace(",", "").strip())
        except ValueError:
            raise ToolError(f"{where} must be a number, got {value!r}") from None
    else:
        raise ToolError(f"{where} must be a number, got {json.dumps(value, default=str)[:40]}")
    if not math.isfinite(number):
        raise ToolError(f"{where} must be a finite number, got {value!r}")
    return number


def _numbers(values: Any, where: str) -> list[float]:
    if not isinstance(values, list):
        raise ToolError(f"{where} must be a list of numbers, got {json.dumps(values, default=str)[:40]}")
    return [_number(v, f"{where}[{i}]") for i, v in enumerate(values)]


def _x_values(values: Any) -> list[float | str]:
    if not isinstance(values, list):
        raise ToolError(f"\"x\" must be a list of numbers or labels, got {json.dumps(values, default=str)[:40]}")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [_number(v, "x") for v in values]
    return [str(v) for v in values]


def parse_plot_data(data: Any) -> tuple[list[float | str], dict[str, list[float]]]:
    """The x values and the named y series in any of the forms a model writes (see ``DATA_FORMS``)."""
    if isinstance(data, str):
        text = data.strip()
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            try:
                data = [float(part) for part in text.strip("[]()").replace(";", ",").split(",") if part.strip()]
            except ValueError:
                raise ToolError(f"data is not JSON or a list of numbers. Give {DATA_FORMS}") from None
    if isinstance(data, list):
        if data and all(isinstance(p, list) and len(p) == 2 for p in data):  # [[x, y], ...]
            xs, series = _x_values([p[0] for p in data]), {"y": _numbers([p[1] for p in data], "y")}
        else:
            series = {"y": _numbers(data, "data")}
            xs = [float(i) for i in range(len(series["y"]))]
    elif isinstance(data, dict):
        keys = {_DATA_KEYS.get(str(k).lower(), str(k).lower()): k for k in data}
        if "y" in keys:
            ys = data[keys["y"]]
            if isinstance(ys, dict):
                series = {str(name): _numbers(values, f"y[{name!r}]") for name, values in ys.items()}
            else:
                series = {"y": _numbers(ys, "y")}
            length = max((len(v) for v in series.values()), default=0)
            xs = _x_values(data[keys["x"]]) if "x" in keys else [float(i) for i in range(length)]
            extra = sorted(str(keys[k]) for k in set(keys) - {"x", "y"})
            if extra:
                raise ToolError(f"unexpected keys {extra} in data; give {DATA_FORMS}")
        elif "x" in keys:
            raise ToolError(f"data has x values but no \"y\"; give {DATA_FORMS}")
        else:
            xs = [str(k) for k in data]
            series = {"y": [_number(v, f"data[{k!r}]") for k, v in data.items()]}
    else:
        raise ToolError(f"data must be {DATA_FORMS}")
    if not xs or not series or not any(series.values()):
        raise ToolError(f"data is empty. Give {DATA_FORMS}")
    if len(xs) > MAX_POINTS:
        raise ToolError(f"too many points ({len(xs)}; at most {MAX_POINTS})")
    for name, values in series.items():
        if len(values) != len(xs):
            label = "y" if name == "y" else f"y[{name!r}]"
            raise ToolError(f"x has {len(xs)} values but {label} has {len(values)}: they must be the same length")
    return xs, series
