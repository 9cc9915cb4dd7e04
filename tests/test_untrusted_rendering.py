"""The course's views in a notebook executed headlessly and then opened in JupyterLab.

A notebook run by the grader or nbconvert is *untrusted* when a person opens it: JupyterLab
sanitises its HTML and runs none of its scripts. This module executes a small notebook with
nbclient (a latent dashboard, circuitsvis attention patterns, a plotly figure, the graph
explorer, and one probe per output mimetype), starts JupyterLab on localhost (its own config,
data and settings folders, so the notebook is untrusted) and opens it in headless Chromium;
a signed copy is opened too, as a trusted notebook. Every view must be visibly drawn (elements
with a size, not just text), and no request may leave the machine. The probe cells pin down what
JupyterLab does with each mimetype, as written in the note at the top of utils/dashboard.py.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
from nbformat.sign import NotebookNotary
import pytest

from browser import chromium, need_browser, non_local
from utils import course

SVG = '<svg xmlns="http://www.w3.org/2000/svg" width="100" height="50"><rect width="80" height="40" fill="red"><title>svg title</title></rect></svg>'
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP438AAAAQBAYDFKhhdAAAAAElFTkSuQmCC"  # 1×1, orange
CELLS = {  # name -> source; each cell displays one thing
    "setup": "import os, sys, warnings\nsys.path.insert(0, os.environ['COURSE_ROOT'])\nwarnings.simplefilter('ignore')\n"
             "import torch\nfrom IPython.display import HTML, display\n"
             "from utils.world import labelled_corpus, load_dictionary, load_model, replacement_model\n"
             "model = load_model()\ndata = labelled_corpus(30)",
    "dashboard": "from utils.dashboard import dashboard_data, display_dashboard\n"
                 "sae = load_dictionary('resid_pre_2')\n"
                 "k = int(dashboard_data(sae, model, data).scores.density.argmax())\n"
                 "display_dashboard(sae, k, model=model, data=data)",
    "attention": "from utils.dashboard import attention_patterns\n"
                 "tokens = model.to_tokens('The goalie saved the goal and the goalie saved')\n"
                 "_, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith('hook_pattern'))\n"
                 "attention_patterns(torch.stack([cache['pattern', 0][0, 2], cache['pattern', 2][0, 3]]), "
                 "model.to_str_tokens(tokens), ['0.2', '2.3'])",
    "plotly": "import plotly.express as px\npx.imshow(cache['pattern', 0][0, 2], title='head 0.2').show()",
    "explorer": "import circuit_tracer\nfrom utils.graph_explorer import explore_graph\n"
                "graph = circuit_tracer.attribute(model.to_tokens('The state containing Dallas has its capital in')[0], "
                "replacement_model(model), verbose=False)\nview = explore_graph(graph, n_docs=30)\nview",
    "explorer_table": "display(HTML(view.html_table()))  # what front ends without the plotly extension show",
    # probes: what JupyterLab does with each mimetype (asserted in test_untrusted_mimetype_behaviour)
    "html_svg": f"display(HTML('{SVG}'))",
    "html_styles": "display(HTML('<div style=\"display:flex;align-items:flex-end;height:60px\">"
                   "<div class=\"probe\" title=\"tip\" style=\"width:10px;height:40px;background:#f08c00\"></div></div>'))",
    "html_script": "display(HTML('<div id=\"probe-script\">static</div>"
                   "<script>document.getElementById(\"probe-script\").textContent = \"ran\"</script>'))",
    "html_iframe": "display(HTML('<b>before</b><iframe srcdoc=\"in frame\" width=\"100\" height=\"40\"></iframe>'))",
    "html_data_img": f"display(HTML('<img alt=\"pixel\" width=\"20\" height=\"20\" src=\"data:image/png;base64,{PNG}\">'))",
    "svg_only": f"display({{'image/svg+xml': '{SVG}'}}, raw=True)",
    "svg_text": f"display({{'image/svg+xml': '{SVG}', 'text/plain': 'plain fallback'}}, raw=True)",
    "png": f"display({{'image/png': '{PNG}', 'text/plain': 'plain fallback'}}, raw=True)",
    "javascript": "display({'application/javascript': 'element.textContent = \"js ran\"', 'text/plain': 'plain fallback'}, raw=True)",
    "markdown": "display({'text/markdown': '**bold markdown**', 'text/plain': 'plain fallback'}, raw=True)",
    "plotly_html": "display({'application/vnd.plotly.v1+json': {'data': [{'y': [1, 3, 2], 'type': 'bar'}], 'layout': {}},"
                   " 'text/html': '<b>html instead</b>', 'text/plain': 'plain fallback'}, raw=True)",
}

# Per output of each cell: its mimetype as rendered, text, size and the elements the tests look for.
MEASURE = """() => Array.from(document.querySelectorAll('.jp-Notebook .jp-Cell.jp-CodeCell')).map(cell => {
  const outputs = Array.from(cell.querySelectorAll('.jp-OutputArea-output'));
  const heights = sel => Array.from(cell.querySelectorAll(sel)).map(e => e.getBoundingClientRect().height);
  const coloured = sel => Array.from(cell.querySelectorAll(sel)).filter(e => {
      const c = getComputedStyle(e).backgroundColor; return c !== 'rgba(0, 0, 0, 0)' && c !== 'transparent'; }).length;
  return {
    name: (cell.querySelector('.jp-InputArea-editor').innerText.match(/# view: (\\w+)/) || [])[1],
    outputs: outputs.map(o => ({
      mime: o.getAttribute('data-mime-type') || (o.classList.contains('jp-RenderedPlotly') ? 'plotly' : null),
      text: o.innerText, height: o.getBoundingClientRect().height, html: o.innerHTML.length,
      start: o.innerHTML.slice(0, 600)})),
    svg: cell.querySelectorAll('.jp-OutputArea-output svg').length,
    img: cell.querySelectorAll('.jp-OutputArea-output img').length,
    iframe: cell.querySelectorAll('.jp-OutputArea-output iframe').length,
    bars: heights('.histogram .bar'), probe: heights('.probe'), titled: cell.querySelectorAll('[title="tip"]').length,
    attn_cells: cell.querySelectorAll('.attention-static td.attn').length, attn_coloured: coloured('.attention-static td.attn'),
    circuitsvis: heights('[id^="circuits-vis-"]'), circuitsvis_children: cell.querySelectorAll('[id^="circuits-vis-"] *').length,
    node_chips: coloured('.graph-explorer-table .node'), node_chip_heights: heights('.graph-explorer-table .node'),
    plotly_points: cell.querySelectorAll('.jp-RenderedPlotly .scatterlayer path.point').length,
    plotly_svg: heights('.jp-RenderedPlotly .main-svg'),
    plotly_heatmap: cell.querySelectorAll('.jp-RenderedPlotly .heatmaplayer image, .jp-RenderedPlotly .hm image').length,
    plotly_bars: cell.querySelectorAll('.jp-RenderedPlotly .barlayer path').length,
  };
})"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, server: subprocess.Popen, log: Path, seconds: float = 90) -> None:
    end = time.time() + seconds
    while time.time() < end:
        if server.poll() is not None:
            raise RuntimeError(f"JupyterLab exited ({server.returncode}):\n{log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within {seconds} s:\n{log.read_text()[-3000:]}")


def _use_explorer(page, picture: Path) -> dict:
    """Hover a feature node of the explorer in the notebook, then pick the first node of its
    "highlight" menu; report the hover text and which path overlays are then visible."""
    cell = page.locator(".jp-Notebook .jp-Cell.jp-CodeCell").nth(list(CELLS).index("explorer"))
    plot = cell.locator(".jp-RenderedPlotly")
    plot.scroll_into_view_if_needed()
    features = plot.evaluate("el => el.data.findIndex(t => t.name === 'features')")
    box = plot.locator(".scatterlayer .trace").nth(features).locator("path.point").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector(".jp-RenderedPlotly .hoverlayer .hovertext", timeout=5_000)
    hover = plot.evaluate("el => el.querySelector('.hoverlayer').textContent")
    plot.locator(".updatemenu-header-group").click()
    plot.locator(".updatemenu-dropdown-button").nth(1).click()  # 0 is "highlight: none"
    page.wait_for_timeout(300)
    plot.screenshot(path=str(picture))
    shown = plot.evaluate("el => el.data.filter(t => t.meta && t.meta.paths_from && t.visible === true)"
                          ".map(t => [t.meta.paths_from, t.x.filter(x => x !== null).length])")
    height = plot.evaluate("el => el.getBoundingClientRect().height")
    return {"hover": hover, "shown": shown, "height": height, "menu": plot.evaluate("el => el.layout.updatemenus[0].buttons[1].label")}


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """The probe notebook executed headlessly, served by one JupyterLab on localhost, measured in
    Chromium as untrusted.ipynb and as a signed (trusted) copy. Yields {"untrusted"|"trusted":
    {cell name: measurements}, "requests": [...], "folder": Path}."""
    need_browser()
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("untrusted")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(f"# view: {name}\n{source}") for name, source in CELLS.items()]
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    os.environ.setdefault("COURSE_ROOT", str(course.REPO_ROOT))
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(folder)}}).execute()

    env = dict(os.environ, COURSE_ROOT=str(course.REPO_ROOT))
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR",
                 "JUPYTERLAB_WORKSPACES_DIR"):
        env[name] = str(folder / name.lower())
        Path(env[name]).mkdir()
    # Draw every cell, not only those in view (JupyterLab 4 virtualises long notebooks by default).
    settings = Path(env["JUPYTERLAB_SETTINGS_DIR"], "@jupyterlab", "notebook-extension")
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    news = Path(env["JUPYTERLAB_SETTINGS_DIR"], "@jupyterlab", "apputils-extension")
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')  # no news pop-up
    nbformat.write(notebook, folder / "untrusted.ipynb")  # executed, never signed: untrusted
    # A signature trusts any notebook with the same content: make the signed copy differ.
    notebook.metadata["course_test_copy"] = "trusted"
    NotebookNotary(data_dir=env["JUPYTER_DATA_DIR"]).sign(notebook)
    nbformat.write(notebook, folder / "trusted.ipynb")

    port, token, log = _free_port(), secrets.token_hex(16), folder / "jupyterlab.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", "--LabApp.news_url=",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--LabApp.extension_manager=readonly"],
            env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/api/status?token={token}", server, log)
        result = {"folder": folder}
        with chromium(folder, width=1400, height=1000) as (context, requests):
            for name in ("untrusted", "trusted"):
                page = context.new_page()
                page.goto(f"{base}/lab/tree/{name}.ipynb?token={token}&reset", wait_until="load")
                page.wait_for_selector(".jp-Notebook .jp-Cell.jp-CodeCell .jp-OutputArea-output", timeout=90_000)
                # plotly draws asynchronously: wait for its three figures (plotly cell, explorer, probe)
                page.wait_for_function("document.querySelectorAll('.jp-RenderedPlotly .main-svg').length >= 3",
                                       timeout=60_000)
                if name == "trusted":  # circuitsvis renders from a module script after load
                    page.wait_for_function("Array.from(document.querySelectorAll('[id^=\"circuits-vis-\"]'))"
                                           ".some(e => e.getBoundingClientRect().height > 100)", timeout=30_000)
                page.wait_for_timeout(500)
                result[name] = {cell["name"]: cell for cell in page.evaluate(MEASURE)}
                if name == "untrusted":
                    result["explorer_use"] = _use_explorer(page, folder / "untrusted-explorer-highlighted.png")
                cells = page.locator(".jp-Notebook .jp-Cell.jp-CodeCell")
                for i, cell in enumerate(CELLS):  # a picture of each view, for a person to look at
                    if cell in ("dashboard", "attention", "plotly", "explorer_table") or (cell, name) == ("explorer", "trusted"):
                        cells.nth(i).locator(".jp-OutputArea").screenshot(path=str(folder / f"{name}-{cell}.png"))
                page.close()
            result["requests"] = list(requests)
        (folder / "measured.json").write_text(json.dumps(result, indent=1, default=str))  # for a failing run
        yield result
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()


def _mimes(cell) -> list[str | None]:
    return [o["mime"] for o in cell["outputs"]]


def test_no_request_leaves_the_machine(lab):
    assert lab["requests"] and not non_local(lab["requests"]), non_local(lab["requests"])


@pytest.mark.parametrize("trust", ["untrusted", "trusted"])
def test_dashboard_histogram_is_drawn(lab, trust):
    cell = lab[trust]["dashboard"]
    assert _mimes(cell) == ["text/html"]
    assert "Latent" in cell["outputs"][0]["text"] and "Top activating contexts" in cell["outputs"][0]["text"]
    assert len(cell["bars"]) == 40 and max(cell["bars"]) == pytest.approx(80, abs=1)  # the tallest bar is full height
    assert sum(h > 0 for h in cell["bars"]) >= 3


def test_attention_patterns_untrusted_show_the_static_heatmap(lab):
    cell = lab["untrusted"]["attention"]
    n = 10  # BOS + 9 tokens of the prompt
    assert cell["attn_cells"] == 2 * n * n
    assert cell["attn_coloured"] >= 2 * n  # every row attends somewhere
    assert cell["outputs"][0]["height"] > 150
    assert "static copy" in cell["outputs"][0]["text"]
    assert "Head Selector" not in cell["outputs"][0]["text"]  # circuitsvis's script was stripped: it drew nothing


def test_attention_patterns_trusted_show_circuitsvis_only(lab):
    cell = lab["trusted"]["attention"]
    assert max(cell["circuitsvis"]) > 100 and cell["circuitsvis_children"] > 10
    assert "Head Selector" in cell["outputs"][0]["text"]  # drawn by circuitsvis's bundled JavaScript
    assert cell["attn_cells"] == 0  # the static copy removed itself


@pytest.mark.parametrize("trust", ["untrusted", "trusted"])
def test_plotly_figure_is_drawn(lab, trust):
    cell = lab[trust]["plotly"]
    assert _mimes(cell) == ["plotly"]
    assert cell["plotly_heatmap"] >= 1 and max(cell["plotly_svg"]) > 200


@pytest.mark.parametrize("trust", ["untrusted", "trusted"])
def test_graph_explorer_is_drawn(lab, trust):
    cell = lab[trust]["explorer"]
    assert _mimes(cell) == ["plotly"]
    assert cell["plotly_points"] >= 20 and max(cell["plotly_svg"]) > 400  # nodes of the Dallas graph
    assert "layer 0" in cell["outputs"][0]["text"] and "logits" in cell["outputs"][0]["text"]


def test_graph_explorer_static_table_survives_sanitising(lab):
    cell = lab["untrusted"]["explorer_table"]
    assert _mimes(cell) == ["text/html"]
    assert cell["node_chips"] >= 30 and min(cell["node_chip_heights"]) > 5  # one coloured chip per node
    assert "layer 3" in cell["outputs"][0]["text"] and "tokens" in cell["outputs"][0]["text"]


def test_graph_explorer_hover_and_highlight_menu_work_untrusted(lab):
    use = lab["explorer_use"]
    assert "activation" in use["hover"] and "influence on the logits" in use["hover"]
    assert "best planted concept" in use["hover"]  # course-world latent details
    assert len(use["shown"]) == 1 and use["shown"][0][1] >= 2  # one node's paths, at least one edge long
    assert use["menu"].startswith("paths from ")
    assert use["height"] > 400  # still drawn after the restyle (a "responsive" figure collapsed to its title)


def test_untrusted_mimetype_behaviour(lab):
    """The behaviour documented at the top of utils/dashboard.py, measured."""
    cells = lab["untrusted"]
    svg = cells["html_svg"]
    assert svg["svg"] == 0 and svg["outputs"][0]["text"].strip() == "svg title"  # <svg> dropped, <title> text kept
    styles = cells["html_styles"]
    assert styles["probe"] == [40] and styles["titled"] == 1  # flex, height, background and title kept
    assert cells["html_script"]["outputs"][0]["text"].strip() == "static"  # the script never ran
    assert cells["html_iframe"]["iframe"] == 0 and "before" in cells["html_iframe"]["outputs"][0]["text"]
    assert cells["html_data_img"]["img"] == 1
    assert _mimes(cells["svg_only"]) == []  # nothing at all (trusted: an <img> with a data: URI)
    assert _mimes(lab["trusted"]["svg_only"]) == ["image/svg+xml"] and lab["trusted"]["svg_only"]["img"] == 1
    assert "data-jupyter-id" in cells["attention"]["outputs"][0]["start"]  # id attributes are renamed
    assert _mimes(cells["svg_text"]) == ["text/plain"]
    assert _mimes(cells["png"]) == ["image/png"] and cells["png"]["img"] == 1
    assert _mimes(cells["javascript"]) == ["text/plain"]
    assert _mimes(cells["markdown"]) == ["text/markdown"]
    assert _mimes(cells["plotly_html"]) == ["plotly"] and cells["plotly_html"]["plotly_bars"] == 3
    # and in the trusted copy the same script does run
    assert lab["trusted"]["html_script"]["outputs"][0]["text"].strip() == "ran"
