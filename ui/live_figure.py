"""A Plotly figure that stays mounted while it changes: one graph div, redrawn with ``Plotly.react``.

``st.plotly_chart`` derives its element id from the figure, so a live figure is remounted on every
change. This small Custom Component (v2) keeps one div per key and hands each new figure to
``Plotly.react``. plotly.js is plotly.js's own *basic* bundle (scatter, bar and pie: all the live
figures draw), the same version as the installed ``plotly`` package's, kept in ``static/``
(the lab works offline) and served by Streamlit's static file serving, which the browser may cache.
Every page asks for it first thing (``page_header``), so the browser has it evaluated, and its
drawing code warmed on a hidden chart, long before a run's first point; only the figure's JSON
travels on a redraw.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import streamlit as st

PLOTLY_JS = Path(__file__).resolve().parents[1] / "static" / "plotly-basic.min.js"
"""plotly.js's basic bundle (npm ``plotly.js-basic-dist-min``, MIT): 1.2 MB that Chromium evaluates in
about a quarter of the time of the plotly package's full 4.8 MB ``plotly.min.js``. Its version must be
the ``plotly`` package's plotly.js version (``tests/test_live_core.py`` checks)."""
LOADER_KEY = "live_figure_plotly_js"
HTML = '<div class="live-figure"></div>'
CSS = (".live-figure { width: 100%; min-height: 1px; } "
       ".st-key-" + LOADER_KEY + " { position: absolute; width: 0; height: 0; overflow: hidden; }")
"""The loader's element is taken out of the page's flow (no gap where it sits) but stays rendered."""
JS = r"""
const loading = window.__liveFigurePlotly || (window.__liveFigurePlotly = {});

function plotlyFrom(src) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading[src]) loading[src] = new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.async = true;
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => { delete loading[src]; reject(new Error("plotly.js did not load from " + src)); };
    document.head.appendChild(script);
  });
  return loading[src];
}

function warmUp(Plotly, figure) {
  // Draw a live figure once, off screen, while the page is idle: the first real chart then does not
  // pay plotly.js's first-draw costs (its code compiled on first use, its styles added to the page).
  // Skipped once a real chart has drawn curves: it has paid them, and a warm-up would only compete with it.
  if (loading.warm || !figure) return;
  loading.warm = true;
  const idle = window.requestIdleCallback || (f => setTimeout(f, 200));
  idle(() => {
    if (loading.drawn) return;
    const div = document.createElement("div");
    div.style.cssText = "position:fixed;left:-10000px;top:0;width:800px;visibility:hidden";
    document.body.appendChild(div);
    Promise.resolve(Plotly.newPlot(div, figure.data, figure.layout, {displaylogo: false}))
      .then(() => new Promise(r => setTimeout(r, 0)))
      .then(() => { Plotly.purge(div); div.remove(); }, () => div.remove());
  }, {timeout: 2000});
}

export default function ({ data, parentElement }) {
  const div = parentElement.querySelector(".live-figure");
  if (!div || !data) return;
  if (!data.figure) {  // load_plotly_js: plotly.js only, ahead of the first figure
    div.style.minHeight = "0";
    plotlyFrom(data.src).then(Plotly => warmUp(Plotly, data.warm_up)).catch(() => {});
    return;
  }
  div.style.height = data.figure.layout.height + "px";  // the figure's room before plotly.js arrives
  div.__wanted = data.revision;
  plotlyFrom(data.src).then(Plotly => {
    if (div.__wanted !== data.revision || div.__drawn === data.revision) return;
    div.__drawn = data.revision;
    loading.drawn = loading.drawn || data.figure.data.some(trace => (trace.x || []).length > 0);
    return Plotly.react(div, data.figure.data, data.figure.layout, data.config);
  }).catch(err => { div.textContent = String(err); });
  return () => { if (window.Plotly) window.Plotly.purge(div); };  // called once, when the element leaves the page
}
"""
CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}

_mount = st.components.v2.component("softmax_lab.live_figure", html=HTML, css=CSS, js=JS, isolate_styles=False)


def _plotly_js_url() -> str:
    """Where this server serves the basic plotly.js: ``static/`` through Streamlit's static file serving
    (``server.enableStaticServing``), whose replies carry Last-Modified and ETag, so the browser can keep it."""
    base = st.get_option("server.baseUrlPath").strip("/")
    return f"{'/' + base if base else ''}/app/static/{PLOTLY_JS.name}"


def _without_unused_styles(figure: dict) -> dict:
    """The figure without its template's defaults for trace types it does not draw (most of the
    template's 7 kB, sent again on every change)."""
    template = figure.get("layout", {}).get("template", {})
    if "data" in template:
        drawn = {trace.get("type", "scatter") for trace in figure.get("data", [])}
        template["data"] = {kind: styles for kind, styles in template["data"].items() if kind in drawn}
    return figure


@lru_cache(maxsize=8)
def _prepared(figure_json: str) -> tuple[dict, str]:
    """The figure to send and its revision, parsed once per figure rather than on every poll."""
    return (_without_unused_styles(json.loads(figure_json)),
            hashlib.blake2b(figure_json.encode(), digest_size=8).hexdigest())


def live_figure(figure_json: str, key: str) -> None:
    """Draw ``figure_json`` (a Plotly figure's ``to_json()``) as the element ``key``: in place when the
    element is already on the page, redrawn by the browser only when the figure changed."""
    figure, revision = _prepared(figure_json)
    _mount(key=key, data={"figure": figure, "revision": revision, "config": CONFIG, "src": _plotly_js_url()},
           height=figure["layout"]["height"])


@st.cache_data(show_spinner=False)
def _warm_up_figure() -> dict:
    """A live loss figure of two made-up epochs: what the hidden first draw draws (lines, markers, legend,
    the minibatch band), so that it compiles the code the real curves then run."""
    from softmax_core.figures.live import live_loss

    epochs = [{"epoch": e, "train_loss": 0.5 / e, "validation_loss": 0.52 / e, "test_loss": 0.51 / e,
               "step_losses": [0.6 / e, 0.5 / e, 0.55 / e]} for e in (1, 2)]
    return _without_unused_styles(json.loads(live_loss(epochs).to_json()))


def load_plotly_js() -> None:
    """A hidden element that has the browser load plotly.js now and then, when idle, draw one live
    figure off screen: a page's first live figure neither waits for the script nor pays the first
    draw (every page calls this from ``page_header``; the browser loads it once per tab)."""
    _mount(key=LOADER_KEY, data={"src": _plotly_js_url(), "warm_up": _warm_up_figure()}, height="content")
