"""The Gradio Blocks of the app: one function per tab, one handler per event; every request is handled by
serve.service (validation, sampling) and the Search view's data comes from serve.search_view.

Handlers that update several components return a dict {component: value}, so that nothing depends on the order
of an outputs list.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import gradio as gr
import numpy as np
import pandas as pd
from PIL import Image

from search.live import STATUSES
from serve.components import digit_sketchpad, digit_upload, quiet_refusals
from serve.gradio_internals import upload_folder
from serve.images import FORMAT_NAMES, MAX_INPUT_PIXELS
from serve.search_view import FRONTS, SearchView, read_view
from serve.server_log import log_refusal
from serve.service import (
    CLASS_GAUSSIAN,
    DEFAULT_NOISE_SCALE,
    EXAMPLES,
    MAX_NOISE,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_SOURCES,
    MAX_STEPS,
    MAX_TEMPERATURE,
    MIN_STEPS,
    InvalidRequest,
    VAEService,
    default_mode,
)
from serve.uploads import OUTPUTS_SUBFOLDER
from vae.checkpoint import EXAMPLES_PER_CLASS

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # launch(max_file_size=...): Gradio refuses larger uploads while they arrive
MAX_SIDE = int(MAX_INPUT_PIXELS**0.5)
UPLOAD_LIMITS = (f"{FORMAT_NAMES} only; at most {MAX_UPLOAD_BYTES // 2**20} MB and "
                 f"{MAX_INPUT_PIXELS:,} pixels (e.g. {MAX_SIDE}x{MAX_SIDE})")
REFRESH_S = 3.0  # the Search view and "follow the best" re-read the experiment this often while a search runs
MODE_CHOICES = [("the class's Gaussian in the latent space", CLASS_GAUSSIAN),
                ("real examples' posteriors", EXAMPLES)]
# Scale the small grids up to their frame, as crisp squares rather than a blur.
CSS = ".pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }"

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(fn: F) -> F:
    """Turn the service's InvalidRequest into a gr.Error: a visible message, one line in the log, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InvalidRequest as exc:
            log_refusal(fn.__name__, str(exc))
            raise gr.Error(str(exc), print_exception=False) from exc

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps fn's signature, which F promises


def quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For the first render when the page opens: a view this model cannot show (e.g. no example bank)
    stays empty instead of greeting the user with an error; its button still explains why."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except gr.Error:
            return gr.skip()

    return wrapper


def png_file(image: np.ndarray) -> str:
    """Encode a uint8 image as PNG (lossless, small for 28x28 cells) under the Gradio cache, named
    by its content and written by atomic rename.

    Returning the array itself would let Gradio write it (save_pil_to_cache), and that rewrites an
    existing file of the same content in place: two identical requests at once (the same seed,
    e.g. the defaults) then serve a half-written file to one of the downloads. Measured with 8
    concurrent identical requests on Gradio 6.31: 5 to 13 of 40 downloads failed before this.
    """
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    data = buffer.getvalue()
    folder = upload_folder() / OUTPUTS_SUBFOLDER
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()}.png"
    if not path.exists():
        fd, staging = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(staging, path)
    return str(path)


def output_image(label: str, height: int | None = None, elem_id: str | None = None) -> gr.Image:
    return gr.Image(label=label, format="png", interactive=False, height=height, elem_id=elem_id,
                    elem_classes=["pixelated"], buttons=["download", "fullscreen"])


def served_line(service: VAEService) -> str:
    """The line under the title: what is served, from where, how good, and whether it follows a search."""
    info = service.model_info()
    metric = info["metrics"].get("test_neg_elbo", info["metrics"].get("val_neg_elbo"))
    where = f"experiment `{info['experiment']}`, " if info["experiment"] else ""
    following = (" Following the running search: a new best checkpoint is served as soon as it appears."
                 if info["following"] else "")
    kind = "val " if "test_neg_elbo" not in info["metrics"] else ""
    config = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in info["model_config"].items() if v)
    return (f"Serving **{info['serving']}** ({where}{info['dataset']}; {config}"
            + (f"; {kind}neg-ELBO {metric:.2f} nats" if metric else "") + ")." + following)


def leaderboard_frame(service: VAEService) -> pd.DataFrame:
    columns, rows = service.leaderboard()
    return pd.DataFrame(rows, columns=columns)


# --- tabs ----------------------------------------------------------------------------------------


def class_choices(service: VAEService) -> list[tuple[str, int]]:
    """The served model's classes as (name, index) choices; one "all images" choice for unlabelled data."""
    names = service.served.class_names
    return [(name, index) for index, name in enumerate(names)] if names else [("all images (no labels)", 0)]


def generate_tab(service: VAEService, demo: gr.Blocks) -> None:
    choices = class_choices(service)

    @user_errors
    def generate(class_index: int, n_samples: int, noise_scale: float, seed: int, n_sources: int, mode: str):
        out = service.generate(class_index, n_samples, noise_scale, seed, n_sources, mode)
        return png_file(out.examples), png_file(out.samples)

    with gr.Tab("Generate"), gr.Row():
        with gr.Column(scale=1, min_width=240):
            if not service.served.labelled:
                gr.Markdown("This model's images had no labels, so there is no class to generate: the Prior view "
                            "samples it.", elem_id="generate-unlabelled")
            g_class = gr.Dropdown(choices, value=choices[0][1], label="Class", elem_id="generate-class",
                                  interactive=service.served.labelled)
            g_n = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="Samples")
            g_noise = gr.Slider(0, MAX_NOISE, value=DEFAULT_NOISE_SCALE, step=0.05, label="Noise scale",
                                info="0: the class mean (or the example's posterior mean); 1: the full spread")
            g_mode = gr.Radio(MODE_CHOICES, value=default_mode(service.served), label="Draw new codes from",
                              elem_id="generate-mode")
            g_sources = gr.Slider(1, MAX_SOURCES, value=1, step=1,
                                  label="Real examples to start from (posteriors mode)")
            g_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
            g_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
        with gr.Column(scale=1, min_width=160):
            g_examples = output_image("Class mean (decoded) or the real example(s)", height=180,
                                      elem_id="generate-examples")
        with gr.Column(scale=3):
            g_samples = output_image("Generated samples", height=320, elem_id="generate-samples")
    inputs = [g_class, g_n, g_noise, g_seed, g_sources, g_mode]
    g_button.click(generate, inputs, [g_examples, g_samples], api_name="generate")
    demo.load(quiet(generate), inputs, [g_examples, g_samples], api_visibility="private")


def prior_tab(service: VAEService, demo: gr.Blocks) -> None:
    @user_errors
    def prior(n_samples: int, temperature: float, seed: int):
        return png_file(service.prior(n_samples, temperature, seed))

    with gr.Tab("Prior"), gr.Row():
        with gr.Column(scale=1, min_width=240):
            p_n = gr.Slider(1, MAX_SAMPLES, value=32, step=1, label="Samples")
            p_temp = gr.Slider(0, MAX_TEMPERATURE, value=1.0, step=0.05, label="Temperature",
                               info="standard deviation of the codes drawn from N(0, I)")
            p_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
            p_button = gr.Button("Sample the prior", variant="primary")
        with gr.Column(scale=3):
            p_out = output_image("Samples from N(0, I)", height=320)
    p_button.click(prior, [p_n, p_temp, p_seed], p_out, api_name="prior")
    demo.load(quiet(prior), [p_n, p_temp, p_seed], p_out, api_visibility="private")


def interpolate_tab(service: VAEService, demo: gr.Blocks) -> None:
    choices = class_choices(service)

    @user_errors
    def interpolate(class_a: int, example_a: int, class_b: int, example_b: int, steps: int):
        return png_file(service.interpolate(class_a, class_b, steps, example_a, example_b))

    with gr.Tab("Interpolate"):
        with gr.Row():
            i_class_a = gr.Dropdown(choices, value=choices[0][1], label="From class")
            i_example_a = gr.Slider(0, EXAMPLES_PER_CLASS - 1, value=0, step=1, label="Example of it")
            i_class_b = gr.Dropdown(choices, value=choices[-1][1], label="To class")
            i_example_b = gr.Slider(0, EXAMPLES_PER_CLASS - 1, value=0, step=1, label="Example of it")
            i_steps = gr.Slider(MIN_STEPS, MAX_STEPS, value=10, step=1, label="Steps")
        i_button = gr.Button("Interpolate", variant="primary")
        i_out = output_image("Real example, decoded steps between the posterior means, real example", height=120)
    inputs = [i_class_a, i_example_a, i_class_b, i_example_b, i_steps]
    i_button.click(interpolate, inputs, i_out, api_name="interpolate")
    demo.load(quiet(interpolate), inputs, i_out, api_visibility="private")


def reconstruct_tab(service: VAEService, demo: gr.Blocks) -> None:
    @user_errors
    def reconstruct(upload: str | None, sketch: dict | None):
        image = upload if upload is not None else (sketch or {}).get("composite")
        out = service.reconstruct(image)
        return png_file(out.model_input), png_file(out.reconstruction), round(out.neg_elbo, 2)

    @user_errors
    def reconstruct_example():
        out = service.reconstruct(Image.fromarray(service.example_image(0, 0)))
        return png_file(out.model_input), png_file(out.reconstruction), round(out.neg_elbo, 2)

    with gr.Tab("Reconstruct"):
        with gr.Row():
            r_sketch = digit_sketchpad(label="Draw an image (pick the brush on the left first)", image_mode="L",
                                       brush=gr.Brush(default_size=12, colors=["#000000"], color_mode="fixed"),
                                       layers=False, elem_id="reconstruct-sketch")
            # serve.components: neither component decodes anything itself; serve.images opens the file with the
            # allowed formats only and checks its size before decoding.
            r_upload = digit_upload(label=f"...or upload an image (used if present): {UPLOAD_LIMITS}",
                                    height=160, elem_id="reconstruct-upload")
            with gr.Column():
                _, height, width = service.served.checkpoint.config.image_shape
                r_input = output_image(f"What the model sees ({width}x{height})", height=160,
                                       elem_id="reconstruct-input")
                r_out = output_image("Reconstruction", height=160)
                r_elbo = gr.Number(label="neg-ELBO of the image (nats)", interactive=False)
        r_button = gr.Button("Reconstruct", variant="primary", elem_id="reconstruct-button")
    r_button.click(reconstruct, [r_upload, r_sketch], [r_input, r_out, r_elbo], api_name="reconstruct")
    demo.load(quiet(reconstruct_example), None, [r_input, r_out, r_elbo], api_visibility="private")


@dataclass
class SearchTab:
    """The Search view's components."""

    status: gr.Markdown
    board: gr.Dataframe
    by_rounds: gr.LinePlot
    by_time: gr.LinePlot
    curves: gr.LinePlot
    space_x: gr.Dropdown
    space: gr.ScatterPlot
    pareto: gr.ScatterPlot
    importance: gr.BarPlot

    @property
    def outputs(self) -> list[gr.components.Component]:
        return [self.status, self.board, self.by_rounds, self.by_time, self.curves, self.space, self.pareto,
                self.importance]

    def values(self, service: VAEService, space_x: str | None) -> dict[gr.components.Component, Any]:
        """What the Search view shows now, read afresh."""
        if service.search is None:
            empty = pd.DataFrame()
            return {**dict.fromkeys(self.outputs, empty),
                    self.status: "This app serves one checkpoint (--checkpoint): there is no search to show."}
        service.refresh()
        view = read_view(service.search)
        if view is None:
            empty = pd.DataFrame()
            return {**dict.fromkeys(self.outputs, empty), self.status: "The search has not written its status yet."}
        best = view.best_so_far()
        importance = view.importance()
        slots = [f"trial {k}" for k in range(1, max(view.live.num_trials or 0, len(view.live.trials)) + 1)]
        return {
            self.status: view.status(REFRESH_S), self.board: view.leaderboard(),
            self.by_rounds: best[["trial_rounds", "best_val_neg_elbo"]],
            self.by_time: best[["wall_s", "best_val_neg_elbo"]],
            self.curves: with_categories(view.curves(), "trial", slots),
            self.space: gr.ScatterPlot(with_categories(view.space(space_x), "status", STATUSES), x_title=space_x),
            self.pareto: with_categories(view.pareto(), "front", FRONTS),
            self.importance: gr.BarPlot(importance, visible=not importance.empty),
        }


def search_tab(service: VAEService) -> SearchTab:
    view: SearchView | None = read_view(service.search) if service.search else None
    hyperparameters = view.hyperparameters if view else []
    space_x_default = "latent_width" if "latent_width" in hyperparameters else next(iter(hyperparameters), None)
    with gr.Tab("Search"):
        status = gr.Markdown(elem_id="search-status")
        board = gr.Dataframe(label="Leaderboard (best first)", interactive=False, wrap=True,
                             elem_id="search-leaderboard")
        with gr.Row():
            by_rounds = gr.LinePlot(x="trial_rounds", y="best_val_neg_elbo", title="Best so far vs trial-rounds",
                                    x_title="trial-rounds spent", y_title="best val neg-ELBO (nats)",
                                    elem_id="search-best-rounds")
            by_time = gr.LinePlot(x="wall_s", y="best_val_neg_elbo", title="Best so far vs wall time",
                                  x_title="seconds since the search started", y_title="best val neg-ELBO (nats)",
                                  elem_id="search-best-time")
        curves = gr.LinePlot(x="round", y="val_neg_elbo", color="trial", title="Each trial's validation curve",
                             color_title="trial (in the order they first reported)", y_title="val neg-ELBO (nats)",
                             tooltip=["trial", "trial_id", "round", "val_neg_elbo"], elem_id="search-curves")
        with gr.Row():
            with gr.Column():
                space_x = gr.Dropdown(hyperparameters, value=space_x_default, label="Hyperparameter (x axis)",
                                      interactive=bool(hyperparameters))
                space = gr.ScatterPlot(x="value", y="best_val_neg_elbo", color="status", title="Trials in the space",
                                       y_title="best val neg-ELBO (nats)", elem_id="search-space")
            pareto = gr.ScatterPlot(x="parameters", y="best_val_neg_elbo", color="front",
                                    title="Pareto front: loss vs parameters", y_title="best val neg-ELBO (nats)",
                                    elem_id="search-pareto")
        importance = gr.BarPlot(x="hyperparameter", y="importance", title="Hyperparameter importances",
                                elem_id="search-importance", visible=False)
        refresh = gr.Button("Refresh")
    tab = SearchTab(status, board, by_rounds, by_time, curves, space_x, space, pareto, importance)

    def search_progress(space_x: str | None = space_x_default):
        """The Search view: a status line, the leaderboard and the plots' data, read afresh."""
        return tab.values(service, space_x)

    refresh.click(search_progress, space_x, tab.outputs, api_name="search_progress")
    space_x.change(search_progress, space_x, tab.outputs, api_visibility="private")
    return tab


@dataclass
class ModelTab:
    """The Model view's components, and the served-model line above the tabs."""

    served: gr.Markdown
    follow: gr.Checkbox
    info: gr.JSON
    board: gr.Dataframe
    trial: gr.Dropdown
    switch: gr.Button
    switch_status: gr.Markdown

    def values(self, service: VAEService) -> dict[gr.components.Component, Any]:
        service.refresh()  # while following a running search: serve a new best first
        return {self.info: service.model_info(), self.board: leaderboard_frame(service),
                self.served: served_line(service)}


def model_tab(service: VAEService, served: gr.Markdown, demo: gr.Blocks) -> ModelTab:
    with gr.Tab("Model"):
        follow = gr.Checkbox(service.follow, label="Follow the best: serve each new best checkpoint of the running "
                             "search (for every user of this app)",
                             interactive=service.search is not None and service.experiment is None,
                             elem_id="follow-best")
        info = gr.JSON(label="Served model: config and metrics")
        board = gr.Dataframe(leaderboard_frame(service), label="Leaderboard (best first)", interactive=False,
                             wrap=True)
        with gr.Row():
            trials = service.switchable_trials()
            current = service.served.trial_id
            trial = gr.Dropdown(trials, value=current if current in trials else None, label="Trial to serve",
                                interactive=bool(trials))
            switch = gr.Button("Serve this trial", interactive=bool(trials))
        switch_status = gr.Markdown(label="Switch status")
    tab = ModelTab(served, follow, info, board, trial, switch, switch_status)

    def model_info():
        return tab.values(service)

    def set_follow(value: bool):
        service.set_follow(value)
        return tab.values(service)

    @user_errors
    def switch_model(trial_id: str):
        picked = service.switch_model(trial_id)
        return {**tab.values(service),
                switch_status: f"Now serving trial `{picked.trial_id}` ({picked.label}) for every user of this app."}

    outputs = [info, board, served]
    switch.click(switch_model, trial, [*outputs, switch_status], api_name="switch_model")
    follow.change(set_follow, follow, outputs, api_visibility="private")
    demo.load(model_info, None, outputs, api_name="model_info")
    return tab


# --- the app ---------------------------------------------------------------------------------------


def build_app(service: VAEService) -> gr.Blocks:
    """The Blocks app over ``service``; call .queue(...) and .launch(...) on it."""
    with gr.Blocks(title="vaesearch: generate images", delete_cache=(3600, 3600)) as demo:
        timer = gr.Timer(REFRESH_S, active=service.search is not None and service.experiment is None)
        gr.Markdown("# vaesearch\nA variational autoencoder found by hyperparameter search. "
                    "Generate new images of a class from its region of the latent space (or from real "
                    "examples' posteriors), sample the prior, walk the latent space, draw your own image, or watch "
                    "the search.")
        served = gr.Markdown(served_line(service), label="Served model")
        generate_tab(service, demo)
        prior_tab(service, demo)
        interpolate_tab(service, demo)
        reconstruct_tab(service, demo)
        search = search_tab(service)
        model = model_tab(service, served, demo)

        def opened(space_x: str | None):
            return search.values(service, space_x)

        def tick(space_x: str | None):
            """Every REFRESH_S while a search runs: follow a new best, then redraw the Search and Model views.
            Once the search has ended (its export read), the Model view's trial picker opens and the timer
            stops."""
            values = {**search.values(service, space_x), **model.values(service)}
            if service.experiment is None:
                return values
            trials = service.switchable_trials()
            return {**values, model.trial: gr.Dropdown(choices=trials, interactive=bool(trials)),
                    model.switch: gr.Button(interactive=bool(trials)), timer: gr.Timer(active=False)}

        demo.load(opened, search.space_x, search.outputs, api_visibility="private")
        timer.tick(tick, search.space_x, [*search.outputs, model.info, model.board, model.served, model.trial,
                                          model.switch, timer], api_visibility="private")
    quiet_refusals(demo)
    return demo


def with_categories(frame: pd.DataFrame, column: str, categories: list[str] | tuple[str, ...]) -> pd.DataFrame:
    """``frame`` plus an empty row (NaN values, not drawn) for each category it does not have yet.

    A native plot keeps the colour categories of its first drawing in a page (Gradio 6.31): a category that
    appears later (a new trial, a trial that finished) would not be drawn until the page is reloaded. The
    empty rows put the expected categories into the first drawing."""
    missing = [c for c in dict.fromkeys(categories) if c not in set(frame[column])]
    if not missing:
        return frame
    empty = pd.DataFrame({col: [float("nan")] * len(missing) for col in frame.columns if col != column})
    empty[column] = missing
    return pd.concat([frame, empty[frame.columns]], ignore_index=True)
