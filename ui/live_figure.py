"""A Plotly figure that stays mounted while it changes: one graph div, redrawn with ``Plotly.react``.

``st.plotly_chart`` derives its element id from the figure, so a live figure is remounted on every
change. This small Custom Component (v2) keeps one div per key and hands each new figure to
``Plotly.react``. plotly.js is the installed ``plotly`` package's own file (the lab works offline),
served by Streamlit from that package's folder and loaded once per browser tab; only the figure's
JSON travels on a redraw.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import plotly
import streamlit as st
import streamlit.components.v1 as components_v1

PLOTLY_DIR = Path(plotly.__file__).parent / "package_data"
"""Holds plotly.min.js, the plotly.js that the Python package ships (and st.plotly_chart would use)."""
HTML = '<div class="live-figure"></div>'
CSS = ".live-figure { width: 100%; min-height: 1px; }"
JS = r"""
const loading = window.__liveFigurePlotly || (window.__liveFigurePlotly = {});

function plotlyFrom(src) {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading[src]) loading[src] = new Promise((resolve, reject) => {
    const script = document.createElement("script");
    script.src = src;
    script.onload = () => resolve(window.Plotly);
    script.onerror = () => { delete loading[src]; reject(new Error("plotly.js did not load from " + src)); };
    document.head.appendChild(script);
  });
  return loading[src];
}

export default function ({ data, parentElement }) {
  const div = parentElement.querySelector(".live-figure");
  if (!div || !data) return;
  if (!data.figure) {  // load_plotly_js: plotly.js only, ahead of the first figure
    div.style.minHeight = "0";
    plotlyFrom(data.src).catch(() => {});
    return;
  }
  div.style.height = data.figure.layout.height + "px";  // the figure's room before plotly.js arrives
  div.__wanted = data.revision;
  plotlyFrom(data.src).then(Plotly => {
    if (div.__wanted !== data.revision || div.__drawn === data.revision) return;
    div.__drawn = data.revision;
    return Plotly.react(div, data.figure.data, data.figure.layout, data.config);
  }).catch(err => { div.textContent = String(err); });
  return () => { if (window.Plotly) window.Plotly.purge(div); };  // called once, when the element leaves the page
}
"""
CONFIG = {"displaylogo": False, "responsive": True, "modeBarButtonsToRemove": ["select2d", "lasso2d"]}

_mount = st.components.v2.component("softmax_lab.live_figure", html=HTML, css=CSS, js=JS, isolate_styles=False)


def _plotly_js_url() -> str:
    """Where this server serves plotly.min.js: the plotly package's folder as a v1 component's files."""
    served = components_v1.declare_component("plotly_js", path=str(PLOTLY_DIR))
    base = st.get_option("server.baseUrlPath").strip("/")
    return f"{'/' + base if base else ''}/component/{served.name}/plotly.min.js"


def _without_unused_styles(figure: dict) -> dict:
    """The figure without its template's defaults for trace types it does not draw (most of the
    template's 7 kB, sent again on every change)."""
    template = figure.get("layout", {}).get("template", {})
    if "data" in template:
        drawn = {trace.get("type", "scatter") for trace in figure.get("data", [])}
        template["data"] = {kind: styles for kind, styles in template["data"].items() if kind in drawn}
    return figure


def live_figure(figure_json: str, key: str) -> None:
    """Draw ``figure_json`` (a Plotly figure's ``to_json()``) as the element ``key``: in place when the
    element is already on the page, redrawn by the browser only when the figure changed."""
    figure = _without_unused_styles(json.loads(figure_json))
    revision = hashlib.blake2b(figure_json.encode(), digest_size=8).hexdigest()
    _mount(key=key, data={"figure": figure, "revision": revision, "config": CONFIG, "src": _plotly_js_url()},
           height=figure["layout"]["height"])


def load_plotly_js() -> None:
    """An empty element that has the browser load plotly.js now, so a page's first live figure does
    not wait for it (or block the page for the 4.6 MB script's evaluation when its first data arrives)."""
    _mount(key="live_figure_plotly_js", data={"src": _plotly_js_url()}, height="content")
