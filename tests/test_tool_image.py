"""Image tools: pixels right, errors clear, and images flowing between tools by reference (the paths a model
sees), through ``invoke`` and through a real agent run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agentkit.agents import create_agent
from agentkit.messages import ImagePart, Message, ToolCall
from agentkit.models.scripted import ScriptedModel
from agentkit.toolspec import Tool, ToolError
from agentkit.tools.image import Annotate, Crop, DrawBoxes, ImageInfo, Plot, Resize, parse_plot_data
from agentkit.tools.io import ImageIO

ALL = (ImageInfo, Crop, Resize, DrawBoxes, Annotate, Plot)


@pytest.fixture(autouse=True)
def artifacts(tmp_path, monkeypatch) -> Path:
    store = tmp_path / "artifacts"
    monkeypatch.setenv("AGENTKIT_ARTIFACTS", str(store))
    return store


def path_of(output) -> str:
    """The path the model sees for an image result."""
    [part] = output
    assert isinstance(part, ImagePart)
    return part.url


def saved(pixels: np.ndarray) -> str:
    return str(ImageIO(pixels).path)


def size_of(path: str) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def info(path: str) -> dict[str, str]:
    text = ImageInfo().invoke({"image": path})
    return dict(line.split(": ", 1) for line in text.splitlines())


def test_chain_by_reference_plot_resize_crop_info(artifacts):
    chart = path_of(Plot().invoke({"data": {"x": [2021, 2022, 2023], "y": [5, 7, 12]}, "kind": "bar",
                                   "title": "Sales", "xlabel": "year", "ylabel": "units"}))
    assert Path(chart).parent == artifacts and chart.endswith(".png")
    assert size_of(chart) == (640, 480)
    small = path_of(Resize().invoke({"image": chart, "width": 320}))  # height follows: 240
    quarter = path_of(Crop().invoke({"image": f"[image: {small}]", "box": [0, 0, 0.5, 0.5]}))  # as shown to a model
    facts = info(Path(quarter).name)  # a bare artifact name resolves in the store
    assert facts["size"] == "160x120 pixels (width x height)"
    assert facts["format"] == "PNG"
    assert re.fullmatch(r"#[0-9a-f]{6} \(rgb \d+, \d+, \d+\)", facts["mean colour"])


def test_agent_chains_plot_into_crop(artifacts):
    def script(messages: list[Message]) -> Message:
        turn = sum(m.role == "assistant" for m in messages)
        if turn == 0:
            return Message.assistant("", [ToolCall(name="plot", arguments={"data": [3, 1, 4, 1, 5], "kind": "line"})])
        if turn == 1:
            seen = re.search(r"\[image: ([^\]]+)\]", messages[-1].text).group(1)  # what the model reads
            return Message.assistant("", [ToolCall(name="crop", arguments={"image": seen,
                                                                            "box": [0, 0, 320, 240]})])
        return Message.assistant("Cropped the chart.")

    agent = create_agent("react", ScriptedModel(script), tools=[Plot(), Crop()], checkpointer="memory")
    result = agent.run("Plot 3 1 4 1 5 and keep the top-left quarter.")
    assert result.outcome == "answer" and result.answer == "Cropped the chart."
    environment = [m for m in result.messages if m.role == "environment"]
    assert [m.meta["tool_name"] for m in environment] == ["plot", "crop"]
    for message in environment:
        assert isinstance(message.content, list) and isinstance(message.content[0], ImagePart)
    cropped = environment[1].content[0].url
    assert Path(cropped).parent == artifacts and size_of(cropped) == (320, 240)


def test_image_info_reports_size_mode_format_and_mean_colour():
    red = saved(np.full((20, 30, 3), (255, 0, 0), dtype=np.uint8))
    assert ImageInfo().invoke({"image": red}) == (
        "size: 30x20 pixels (width x height)\nmode: RGB\nformat: PNG\nmean colour: #ff0000 (rgb 255, 0, 0)")
    grey = saved(np.full((8, 8), 128, dtype=np.uint8))
    assert info(grey)["mode"] == "L" and info(grey)["mean colour"] == "#808080 (rgb 128, 128, 128)"


def test_photos_are_read_upright(tmp_path):
    photo = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.new("RGB", (40, 20), "white").save(photo, exif=exif)
    assert info(str(photo))["size"] == "20x40 pixels (width x height)"
    assert info(str(photo))["format"] == "JPEG"


def test_crop_in_pixels_and_fractions():
    pixels = np.zeros((100, 200, 3), dtype=np.uint8)
    pixels[:50, 100:] = 255  # the top-right quarter is white
    image = saved(pixels)
    white = path_of(Crop().invoke({"image": image, "box": [100, 0, 200, 50]}))
    assert size_of(white) == (100, 50) and ImageIO(white).to_array().min() == 255
    same = path_of(Crop().invoke({"image": image, "box": [0.5, 0, 1, 0.5]}))
    assert same == white  # content-addressed: the same pixels are the same artifact


@pytest.mark.parametrize(
    "box, message",
    [
        ([0, 0, 300, 50], "box [0, 0, 300, 50] goes outside the 200x100 image: keep left and right within 0..200"),
        ([-5, 0, 50, 50], "goes outside the 200x100 image"),
        ([50, 0, 10, 50], "is empty: right must be greater than left"),
        ([0.5, 0.5, 0.5, 0.9], "is empty"),
        ([1, 2, 3], "box needs 4 numbers [left, top, right, bottom], got 3"),
    ],
)
def test_crop_errors_name_the_image_size(box, message):
    image = saved(np.zeros((100, 200, 3), dtype=np.uint8))
    with pytest.raises(ToolError) as err:
        Crop().invoke({"image": image, "box": box})
    assert message in str(err.value)


def test_resize_keeps_aspect_or_scales():
    image = saved(np.zeros((100, 200, 3), dtype=np.uint8))
    assert size_of(path_of(Resize().invoke({"image": image, "width": 50}))) == (50, 25)
    assert size_of(path_of(Resize().invoke({"image": image, "height": 50}))) == (100, 50)
    assert size_of(path_of(Resize().invoke({"image": image, "width": 30, "height": 30}))) == (30, 30)
    assert size_of(path_of(Resize().invoke({"image": image, "scale": 1.5}))) == (300, 150)
    with pytest.raises(ToolError, match="say how to resize"):
        Resize().invoke({"image": image})
    with pytest.raises(ToolError, match="either scale or width/height"):
        Resize().invoke({"image": image, "scale": 2, "width": 10})
    with pytest.raises(ToolError, match="width must be greater than 0"):
        Resize().invoke({"image": image, "width": 0})
    with pytest.raises(ToolError, match="at most 10000 on a side"):
        Resize().invoke({"image": image, "scale": 100})


def test_draw_boxes_outlines_and_labels():
    image = saved(np.zeros((100, 100, 3), dtype=np.uint8))
    out = path_of(DrawBoxes().invoke({"image": image, "boxes": [
        {"box": [10, 40, 50, 90], "label": "cat", "color": "red"},
        [0.6, 0.6, 0.9, 0.9],  # a bare box, in fractions, gets the next palette colour
    ]}))
    pixels = ImageIO(out).to_array()
    assert tuple(pixels[60, 10]) == (255, 0, 0)  # left edge of the first box
    assert tuple(pixels[60, 30]) == (0, 0, 0)  # its inside is untouched
    assert tuple(pixels[75, 60]) == (0, 255, 0)  # left edge of the second box (lime)
    assert (pixels[25:40, 10:40] == (255, 0, 0)).all(axis=-1).any()  # the label's background, above the box
    assert ImageIO(image).to_array().max() == 0  # the input image is not modified
    with pytest.raises(ToolError, match="unknown colour 'blu'"):
        DrawBoxes().invoke({"image": image, "boxes": [{"box": [0, 0, 10, 10], "colour": "blu"}]})
    with pytest.raises(ToolError, match="box 2 \\[0, 0, 200, 10\\] goes outside the 100x100 image"):
        DrawBoxes().invoke({"image": image, "boxes": [[0, 0, 10, 10], [0, 0, 200, 10]]})
    with pytest.raises(ToolError, match="boxes is empty"):
        DrawBoxes().invoke({"image": image, "boxes": []})


def test_annotate_places_text_where_asked():
    image = saved(np.zeros((100, 200, 3), dtype=np.uint8))
    corner = ImageIO(path_of(Annotate().invoke({"image": image, "text": "Hi", "position": "bottom right"})))
    pixels = corner.to_array()
    assert pixels[50:, 100:].max() > 0 and pixels[:50, :100].max() == 0
    at_point = ImageIO(path_of(Annotate().invoke({"image": image, "text": "Hi", "position": [0.1, 0.1],
                                                   "color": "yellow", "size": 20}))).to_array()
    assert at_point[:50, :100].max() > 0 and at_point[60:, 120:].max() == 0
    with pytest.raises(ToolError, match="position \\[500, 10\\] is outside the 200x100 image"):
        Annotate().invoke({"image": image, "text": "Hi", "position": [500, 10]})
    with pytest.raises(ToolError, match="unknown position 'somewhere': use top-left"):
        Annotate().invoke({"image": image, "text": "Hi", "position": "somewhere"})
    with pytest.raises(ToolError, match="text is empty"):
        Annotate().invoke({"image": image, "text": " "})


@pytest.mark.parametrize("kind", ["line", "bar", "scatter", "pie"])
@pytest.mark.parametrize("data", [
    [3, 1, 4, 1, 5],
    {"apples": 3, "pears": 5, "plums": 2},
    {"x": [1, 2, 3], "y": [2, 4, 8]},
    "[3, 1, 4]",
    "3, 1, 4",
])
def test_plot_draws_every_kind_from_every_data_form(kind, data):
    chart = path_of(Plot().invoke({"data": data, "kind": kind, "title": "t"}))
    assert size_of(chart) == (640, 480)


def test_plot_several_series_and_no_leaked_figures():
    chart = path_of(Plot().invoke({"data": {"x": ["a", "b"], "y": {"2023": [1, 2], "2024": [2, 3]}},
                                   "kind": "bar"}))
    assert size_of(chart) == (640, 480)
    pyplot = sys.modules.get("matplotlib.pyplot")
    assert pyplot is None or pyplot.get_fignums() == []


def test_plot_data_forms_and_errors():
    assert parse_plot_data([[1, 2], [2, 4]]) == ([1.0, 2.0], {"y": [2.0, 4.0]})
    assert parse_plot_data({"labels": ["a", "b"], "values": [1, "2"]}) == (["a", "b"], {"y": [1.0, 2.0]})
    with pytest.raises(ToolError, match="x has 2 values but y has 1"):
        parse_plot_data({"x": [1, 2], "y": [1]})
    with pytest.raises(ToolError, match="data\\['pears'\\] must be a number, got 'many'"):
        parse_plot_data({"apples": 3, "pears": "many"})
    with pytest.raises(ToolError, match="data has x values but no \"y\""):
        parse_plot_data({"x": [1, 2]})
    with pytest.raises(ToolError, match="not JSON or a list of numbers"):
        parse_plot_data("up and to the right")
    with pytest.raises(ToolError, match="data is empty"):
        parse_plot_data([])
    with pytest.raises(ToolError, match="finite"):
        parse_plot_data([1, float("nan")])
    with pytest.raises(ToolError, match="pie chart needs values of 0 or more"):
        Plot().invoke({"data": [-1, 2], "kind": "pie"})


def test_unusual_inputs_become_pngs_or_clear_errors(tmp_path):
    cmyk = tmp_path / "print.jpg"
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(cmyk)
    cropped = path_of(Crop().invoke({"image": str(cmyk), "box": [0, 0, 10, 10]}))
    assert cropped.endswith(".png") and info(cropped)["mode"] == "RGB"
    not_image = tmp_path / "notes.txt"
    not_image.write_text("hello")
    with pytest.raises(ToolError, match="notes.txt is not an image that can be read"):
        ImageInfo().invoke({"image": str(not_image)})
    with pytest.raises(ToolError, match="argument 'image' should be the path of an image file: no file at"):
        Crop().invoke({"image": "missing.png", "box": [0, 0, 1, 1]})


def test_specs_describe_every_argument_and_stay_light():
    names = {cls().spec.name for cls in ALL}
    assert names == {"image_info", "crop", "resize", "draw_boxes", "annotate", "plot"}
    for cls in ALL:
        tool = cls()
        assert isinstance(tool, Tool)
        assert "Example:" in tool.spec.description
        assert all(p.get("description") for p in tool.spec.parameters["properties"].values()), tool.spec.name
        assert tool.meta.outputs == (("text",) if cls is ImageInfo else ("image",))
    code = ("import sys; import agentkit.tools.image as m; "
            "[c().spec for c in (m.ImageInfo, m.Crop, m.Resize, m.DrawBoxes, m.Annotate, m.Plot)]; "
            "print(sorted(k for k in ('PIL', 'matplotlib', 'numpy') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
