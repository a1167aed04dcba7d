"""interactive_figure: redraws on a control change, and shows a failing redraw in its output area."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

widgets = pytest.importorskip("ipywidgets")

from stllr.plotting.style import interactive_figure  # noqa: E402


def _figure(x):
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, x])
    return fig, f"x = {x}"


def _output_types(out):
    return [(o["output_type"], o.get("name")) for o in out.outputs]


def test_redraw_on_change_replaces_the_figure():
    slider = widgets.FloatSlider(value=1.0, min=0.0, max=2.0)
    box = interactive_figure(_figure, x=slider)
    out = box.children[1]
    assert _output_types(out) == [("display_data", None), ("stream", "stdout")]
    slider.value = 1.5
    assert _output_types(out) == [("display_data", None), ("stream", "stdout")]
    assert out.outputs[1]["text"] == "x = 1.5\n"
    assert plt.get_fignums() == []  # every drawn figure is closed


def test_failing_redraw_after_a_change_shows_the_traceback_in_the_output():
    def make_figure(x):
        if x > 1.2:
            raise ValueError(f"x too large: {x}")
        return _figure(x)

    slider = widgets.FloatSlider(value=1.0, min=0.0, max=2.0)
    box = interactive_figure(make_figure, x=slider)
    out = box.children[1]
    slider.value = 1.5  # must not raise into the widget machinery
    assert _output_types(out) == [("stream", "stderr")]
    text = out.outputs[0]["text"]
    assert "Traceback" in text and "ValueError: x too large: 1.5" in text
    slider.value = 0.5  # a later good value replaces the error with the figure again
    assert _output_types(out) == [("display_data", None), ("stream", "stdout")]


def test_failing_first_draw_raises():
    def make_figure(x):
        raise RuntimeError("broken demo")

    with pytest.raises(RuntimeError, match="broken demo"):
        interactive_figure(make_figure, x=widgets.FloatSlider(value=1.0))
