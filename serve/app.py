"""The Gradio web app: layout and wiring only; every request is handled by serve.service.

    python -m serve.app                         # the latest experiment under results/
    python -m serve.app --experiment results/NAME     # also while its search runs: follows its best so far
    python -m serve.app --checkpoint runs/vae-512-64/checkpoint --port 7861

Each view is also an API endpoint (gradio_client, or POST /gradio_api/call/<name>): /generate, /prior,
/interpolate, /reconstruct, /search_progress, /model_info, /switch_model; every call goes through the
queue (--concurrency, --max-queue), and the queue-bypassing /gradio_api/run/<name> routes are closed.
Uploads: PNG, JPEG, WebP, GIF or BMP only, at most 10 MB and 4096x4096 pixels.
Set VAESEARCH_AUTH="user:password" to require a login.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry from a local demo

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from gradio.utils import get_upload_folder  # noqa: E402
from PIL import Image  # noqa: E402

from search.layout import DEFAULT_STORAGE, latest_experiment  # noqa: E402
from serve.components import digit_sketchpad, digit_upload, log_refusal, quiet_refusals  # noqa: E402
from serve.experiment import ExperimentError  # noqa: E402
from serve.images import FORMAT_NAMES, MAX_INPUT_PIXELS  # noqa: E402
from serve.progress import SearchProgress, read_progress  # noqa: E402
from serve.service import (  # noqa: E402
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
    NoCheckpointYet,
    VAEService,
    default_mode,
)
from vae.checkpoint import EXAMPLES_PER_CLASS, CheckpointError  # noqa: E402

AUTH_ENV = "VAESEARCH_AUTH"
MAX_UPLOAD = "10mb"
MAX_SIDE = int(MAX_INPUT_PIXELS**0.5)
UPLOAD_LIMITS = (f"{FORMAT_NAMES} only; at most {MAX_UPLOAD.upper().replace('MB', ' MB')} and "
                 f"{MAX_INPUT_PIXELS:,} pixels (e.g. {MAX_SIDE}x{MAX_SIDE})")
REFRESH_S = 3.0  # the Search view and "follow the best" re-read the experiment this often while a search runs
MODE_CHOICES = [("the class's Gaussian in the latent space", CLASS_GAUSSIAN),
                ("real examples' posteriors", EXAMPLES)]
# Scale the small grids up to their frame, as crisp squares rather than a blur.
CSS = ".pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }"

F = TypeVar("F", bound=Callable[..., Any])


def _user_errors(fn: F) -> F:
    """Turn the service's InvalidRequest into a gr.Error: a visible message, one line in the log, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except InvalidRequest as exc:
            log_refusal(fn.__name__, str(exc))
            raise gr.Error(str(exc), print_exception=False) from exc

    return wrapper  # type: ignore[return-value]


def _quiet(fn: Callable[..., Any]) -> Callable[..., Any]:
    """For the first render when the page opens: a view this model cannot show (e.g. no example bank)
    stays empty instead of greeting the user with an error; its button still explains why."""

    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except gr.Error:
            return gr.skip()

    return wrapper


def _png_file(image: np.ndarray) -> str:
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
    folder = Path(get_upload_folder()) / "vaesearch"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(data).hexdigest()}.png"
    if not path.exists():
        fd, staging = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(staging, path)
    return str(path)


def _output_image(label: str, height: int | None = None, elem_id: str | None = None) -> gr.Image:
    return gr.Image(label=label, format="png", interactive=False, height=height, elem_id=elem_id,
                    elem_classes=["pixelated"], buttons=["download", "fullscreen"])


def build_app(service: VAEService) -> gr.Blocks:
    """The Blocks app over ``service``; call .queue(...) and .launch(...) on it."""
    class_choices = [(name, index) for index, name in enumerate(service.served.class_names)]

    def served_line() -> str:
        info = service.model_info()
        metric = info["metrics"].get("test_neg_elbo", info["metrics"].get("val_neg_elbo"))
        config = info["model_config"]
        where = f"experiment `{info['experiment']}`, " if info["experiment"] else ""
        following = (" Following the running search: a new best checkpoint is served as soon as it appears."
                     if info["following"] else "")
        kind = "val " if "test_neg_elbo" not in info["metrics"] else ""
        stem = f", {config['conv_channels']}-channel conv stem" if config.get("conv_channels") else ""
        return (f"Serving **{info['serving']}** ({where}{info['dataset']}, latent width {config['latent_width']}, "
                f"code width {config['reparam_width']}{stem}"
                + (f", {kind}neg-ELBO {metric:.2f} nats" if metric else "")
                + ")." + following)

    def leaderboard() -> pd.DataFrame:
        columns, rows = service.leaderboard()
        return pd.DataFrame(rows, columns=columns)

    @_user_errors
    def generate(class_index: int, n_samples: int, noise_scale: float, seed: int, n_sources: int, mode: str):
        out = service.generate(class_index, n_samples, noise_scale, seed, n_sources, mode)
        return _png_file(out.examples), _png_file(out.samples)

    @_user_errors
    def prior(n_samples: int, temperature: float, seed: int):
        return _png_file(service.prior(n_samples, temperature, seed))

    @_user_errors
    def interpolate(class_a: int, example_a: int, class_b: int, example_b: int, steps: int):
        return _png_file(service.interpolate(class_a, class_b, steps, example_a, example_b))

    @_user_errors
    def reconstruct(upload: str | None, sketch: dict | None):
        image = upload if upload is not None else (sketch or {}).get("composite")
        out = service.reconstruct(image)
        return _png_file(out.model_input), _png_file(out.reconstruction), round(out.neg_elbo, 2)

    @_user_errors
    def reconstruct_example():
        out = service.reconstruct(Image.fromarray(service.example_image(0, 0)))
        return _png_file(out.model_input), _png_file(out.reconstruction), round(out.neg_elbo, 2)

    def model_info():
        service.refresh()  # while following a running search: serve a new best first
        return service.model_info(), leaderboard(), served_line()

    hyperparameters = read_progress(service.search).hyperparameters if service.search else []
    space_x_default = "latent_width" if "latent_width" in hyperparameters else (hyperparameters or [None])[0]

    def search_progress(space_x: str | None = space_x_default):
        """The Search view: a status line, the leaderboard and the plots' data, read afresh."""
        if service.search is None:
            empty = pd.DataFrame()
            return ("This app serves one checkpoint (--checkpoint): there is no search to show.", empty, empty,
                    empty, empty, empty, empty, empty)
        service.refresh()
        progress = read_progress(service.search)
        return (_search_status(progress), progress.leaderboard().round(4), *_search_plots(progress, space_x))

    def tick(space_x: str | None):
        """Every REFRESH_S while a search runs: follow a new best, then redraw the Search and Model views.
        Once the search has ended (its export read), the Model view's trial picker opens and the timer stops."""
        views = (*search_progress(space_x), *model_info())
        if service.experiment is None:
            return (*views, gr.skip(), gr.skip(), gr.skip())
        trials = service.switchable_trials()
        return (*views, gr.Dropdown(choices=trials, interactive=bool(trials)), gr.Button(interactive=bool(trials)),
                gr.Timer(active=False))

    def set_follow(follow: bool):
        service.set_follow(follow)
        service.refresh()
        return model_info()

    @_user_errors
    def switch_model(trial_id: str):
        served = service.switch_model(trial_id)
        return (service.model_info(), leaderboard(), served_line(),
                f"Now serving trial `{served.trial_id}` ({served.label}) for every user of this app.")

    with gr.Blocks(title="vaesearch: generate digits", delete_cache=(3600, 3600)) as demo:
        timer = gr.Timer(REFRESH_S, active=service.search is not None and service.experiment is None)
        gr.Markdown("# vaesearch\nA variational autoencoder found by hyperparameter search. "
                    "Generate new images of a class from its region of the latent space (or from real "
                    "examples' posteriors), sample the prior, walk the latent space, draw your own digit, or watch "
                    "the search.")
        served_md = gr.Markdown(served_line(), label="Served model")

        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1, min_width=240):
                    g_class = gr.Dropdown(class_choices, value=class_choices[0][1], label="Class",
                                          elem_id="generate-class")
                    g_n = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="Samples")
                    g_noise = gr.Slider(0, MAX_NOISE, value=DEFAULT_NOISE_SCALE, step=0.05, label="Noise scale",
                                        info="0: the class mean (or the example's posterior mean); 1: the full spread")
                    g_mode = gr.Radio(MODE_CHOICES, value=default_mode(service.served),
                                      label="Draw new codes from",
                                      elem_id="generate-mode")
                    g_sources = gr.Slider(1, MAX_SOURCES, value=1, step=1,
                                          label="Real examples to start from (posteriors mode)")
                    g_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                    g_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                with gr.Column(scale=1, min_width=160):
                    g_examples = _output_image("Class mean (decoded) or the real example(s)", height=180,
                                               elem_id="generate-examples")
                with gr.Column(scale=3):
                    g_samples = _output_image("Generated samples", height=320, elem_id="generate-samples")
            g_inputs = [g_class, g_n, g_noise, g_seed, g_sources, g_mode]
            g_button.click(generate, g_inputs, [g_examples, g_samples], api_name="generate")

        with gr.Tab("Prior"):
            with gr.Row():
                with gr.Column(scale=1, min_width=240):
                    p_n = gr.Slider(1, MAX_SAMPLES, value=32, step=1, label="Samples")
                    p_temp = gr.Slider(0, MAX_TEMPERATURE, value=1.0, step=0.05, label="Temperature",
                                       info="standard deviation of the codes drawn from N(0, I)")
                    p_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                    p_button = gr.Button("Sample the prior", variant="primary")
                with gr.Column(scale=3):
                    p_out = _output_image("Samples from N(0, I)", height=320)
            p_button.click(prior, [p_n, p_temp, p_seed], p_out, api_name="prior")

        with gr.Tab("Interpolate"):
            with gr.Row():
                i_class_a = gr.Dropdown(class_choices, value=class_choices[0][1], label="From class")
                i_example_a = gr.Slider(0, EXAMPLES_PER_CLASS - 1, value=0, step=1, label="Example of it")
                i_class_b = gr.Dropdown(class_choices, value=class_choices[-1][1], label="To class")
                i_example_b = gr.Slider(0, EXAMPLES_PER_CLASS - 1, value=0, step=1, label="Example of it")
                i_steps = gr.Slider(MIN_STEPS, MAX_STEPS, value=10, step=1, label="Steps")
            i_button = gr.Button("Interpolate", variant="primary")
            i_out = _output_image("Real example, decoded steps between the posterior means, real example",
                                  height=120)
            i_button.click(interpolate, [i_class_a, i_example_a, i_class_b, i_example_b, i_steps], i_out,
                           api_name="interpolate")

        with gr.Tab("Reconstruct"):
            with gr.Row():
                r_sketch = digit_sketchpad(label="Draw a digit (pick the brush on the left first)",
                                           image_mode="L", canvas_size=(280, 280),
                                           brush=gr.Brush(default_size=12, colors=["#000000"], color_mode="fixed"),
                                           layers=False, elem_id="reconstruct-sketch")
                # serve.components: neither component decodes anything itself; serve.images opens the file
                # with the allowed formats only and checks its size before decoding.
                r_upload = digit_upload(label=f"...or upload an image (used if present): {UPLOAD_LIMITS}",
                                        image_mode=None, sources=["upload", "clipboard"],
                                        placeholder=f"Drop a digit image here\n\n{UPLOAD_LIMITS}")
                with gr.Column():
                    r_input = _output_image("What the model sees (28x28)", height=160, elem_id="reconstruct-input")
                    r_out = _output_image("Reconstruction", height=160)
                    r_elbo = gr.Number(label="neg-ELBO of the image (nats)", interactive=False)
            r_button = gr.Button("Reconstruct", variant="primary", elem_id="reconstruct-button")
            r_button.click(reconstruct, [r_upload, r_sketch], [r_input, r_out, r_elbo], api_name="reconstruct")

        with gr.Tab("Search"):
            s_status = gr.Markdown(elem_id="search-status")
            s_board = gr.Dataframe(label="Leaderboard (best first)", interactive=False, wrap=True,
                                   elem_id="search-leaderboard")
            with gr.Row():
                s_by_epochs = gr.LinePlot(x="trial_epochs", y="best_val_neg_elbo", title="Best so far vs trial-epochs",
                                          x_title="trial-epochs spent", y_title="best val neg-ELBO (nats)",
                                          elem_id="search-best-epochs")
                s_by_time = gr.LinePlot(x="wall_s", y="best_val_neg_elbo", title="Best so far vs wall time",
                                        x_title="seconds since the first trial started",
                                        y_title="best val neg-ELBO (nats)", elem_id="search-best-time")
            s_curves = gr.LinePlot(x="epoch", y="val_neg_elbo", color="trial", title="Each trial's validation curve",
                                   color_title="trial (the leaderboard's 'started')", y_title="val neg-ELBO (nats)",
                                   tooltip=["trial", "trial_id", "epoch", "val_neg_elbo"], elem_id="search-curves")
            with gr.Row():
                with gr.Column():
                    s_space_x = gr.Dropdown(hyperparameters, value=space_x_default, label="Hyperparameter (x axis)",
                                            interactive=bool(hyperparameters))
                    s_space = gr.ScatterPlot(x="value", y="best_val_neg_elbo", color="status",
                                             title="Trials in the space", y_title="best val neg-ELBO (nats)",
                                             elem_id="search-space")
                s_pareto = gr.ScatterPlot(x="parameters", y="best_val_neg_elbo", color="front",
                                          title="Pareto front: loss vs parameters", y_title="best val neg-ELBO (nats)",
                                          elem_id="search-pareto")
            s_importance = gr.BarPlot(x="hyperparameter", y="importance", title="Hyperparameter importances",
                                      elem_id="search-importance", visible=False)
            s_button = gr.Button("Refresh")
        search_outputs = [s_status, s_board, s_by_epochs, s_by_time, s_curves, s_space, s_pareto, s_importance]
        s_button.click(search_progress, s_space_x, search_outputs, api_name="search_progress")
        s_space_x.change(search_progress, s_space_x, search_outputs, api_visibility="private")

        with gr.Tab("Model"):
            m_follow = gr.Checkbox(service.follow, label="Follow the best: serve each new best checkpoint of the "
                                   "running search (for every user of this app)",
                                   interactive=service.search is not None and service.experiment is None,
                                   elem_id="follow-best")
            m_info = gr.JSON(label="Served model: config and metrics")
            m_board = gr.Dataframe(leaderboard(), label="Leaderboard (best first)", interactive=False, wrap=True)
            with gr.Row():
                trials = service.switchable_trials()
                current = service.served.trial_id
                m_trial = gr.Dropdown(trials, value=current if current in trials else None, label="Trial to serve",
                                      interactive=bool(trials))
                m_button = gr.Button("Serve this trial", interactive=bool(trials))
            m_status = gr.Markdown(label="Switch status")
            m_button.click(switch_model, m_trial, [m_info, m_board, served_md, m_status], api_name="switch_model")
        m_follow.change(set_follow, m_follow, [m_info, m_board, served_md], api_visibility="private")
        demo.load(model_info, None, [m_info, m_board, served_md], api_name="model_info")
        # Every view shows its defaults when the page opens, not empty frames.
        demo.load(_quiet(generate), g_inputs, [g_examples, g_samples], api_visibility="private")
        demo.load(_quiet(prior), [p_n, p_temp, p_seed], p_out, api_visibility="private")
        demo.load(_quiet(interpolate), [i_class_a, i_example_a, i_class_b, i_example_b, i_steps], i_out,
                  api_visibility="private")
        demo.load(_quiet(reconstruct_example), None, [r_input, r_out, r_elbo], api_visibility="private")
        demo.load(search_progress, s_space_x, search_outputs, api_visibility="private")
        timer.tick(tick, s_space_x, [*search_outputs, m_info, m_board, served_md, m_trial, m_button, timer],
                   api_visibility="private")
    quiet_refusals(demo)
    return demo


def _search_status(progress: SearchProgress) -> str:
    trials = len(progress.trials)
    running = sum(t.status == "RUNNING" for t in progress.trials)
    best = min((t.best for t in progress.trials if t.best is not None), default=None)
    state = "ended and exported" if progress.exported else f"running ({running} trial(s) training now)"
    epochs = f" of at most {progress.max_epochs} each" if progress.max_epochs else ""
    line = (f"Search `{progress.experiment.name}`: {state}; {trials} trial(s), {progress.trial_epochs} trial-epochs"
            f"{epochs}" + (f"; best val neg-ELBO so far **{best:.2f}** nats." if best is not None else "."))
    if not progress.exported:
        line += f" Refreshes every {REFRESH_S:g} s."
    if not progress.importances:
        line += " Importances appear when the export writes best/importance.json."
    return line


def _search_plots(progress: SearchProgress, space_x: str | None) -> tuple[pd.DataFrame, ...]:
    """The data of the Search view's plots (best so far twice, curves, space, Pareto, importances)."""
    best = progress.best_so_far()
    board = progress.leaderboard()
    space = pd.DataFrame(columns=["trial_id", "value", "best_val_neg_elbo", "status"])
    if space_x in board.columns:
        space = board[board["best_val_neg_elbo"].notna()][["trial_id", space_x, "best_val_neg_elbo", "status"]]
        space = space.rename(columns={space_x: "value"})
    importance = progress.importance_frame()
    curves = progress.reports()[["trial", "trial_id", "epoch", "val_neg_elbo"]]
    slots = [f"trial {k}" for k in range(1, max(progress.num_trials or 0, len(progress.trials)) + 1)]
    return (best[["trial_epochs", "best_val_neg_elbo"]], best[["wall_s", "best_val_neg_elbo"]],
            _with_categories(curves, "trial", slots),
            gr.ScatterPlot(_with_categories(space, "status", STATUSES), x_title=space_x),
            _with_categories(progress.pareto(), "front", FRONTS), gr.BarPlot(importance, visible=not importance.empty))


STATUSES = ("RUNNING", "PENDING", "PAUSED", "TERMINATED", "EARLY_STOPPED", "ERROR", "unknown")
FRONTS = ("Pareto front", "dominated")


def _with_categories(frame: pd.DataFrame, column: str, categories: list[str] | tuple[str, ...]) -> pd.DataFrame:
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


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serve.app",
        description="Serve a VAE checkpoint as a Gradio web app (Generate, Prior, Interpolate, Reconstruct, Model). "
        f"Set {AUTH_ENV}=user:password to require a login.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--experiment", type=Path, default=None,
                        help="a search's experiment folder: exported (its best/ is served) or still running (its best "
                        f"trial checkpoint so far is served and followed); default: the latest exported under "
                        f"{DEFAULT_STORAGE}/")
    source.add_argument("--checkpoint", type=Path, default=None, help="serve one checkpoint folder instead")
    parser.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="with --experiment of a search that has no trial checkpoint yet (or whose folder does "
                        "not exist yet), wait up to this long for its first one (default 0: refuse at once)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--concurrency", type=int, default=2,
                        help="requests processed at once (default 2: one per core on a small CPU server)")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="requests waiting at most; more are refused (default 64)")
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads per request (default 1: concurrent requests use the cores)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link (off by default)")
    return parser.parse_args(argv)


def _auth_from_env() -> tuple[str, str] | None:
    value = os.environ.get(AUTH_ENV)
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"{AUTH_ENV} must look like user:password (value not shown)")
    return user, password


def _load_service(args: argparse.Namespace) -> VAEService:
    if args.checkpoint is not None:
        return VAEService.from_checkpoint(args.checkpoint)
    experiment = args.experiment or latest_experiment(DEFAULT_STORAGE)
    if experiment is None:
        raise ExperimentError(f"no exported experiment under {DEFAULT_STORAGE}/ (run python -m search.run first, "
                              "or pass --experiment DIR or --checkpoint DIR)")
    return _wait_for_experiment(Path(experiment), args.wait)


def _wait_for_experiment(path: Path, wait_s: float) -> VAEService:
    """Serve ``path``; a search that has not saved a checkpoint yet (or not even made its folder) is waited
    for up to ``wait_s`` seconds, with one line saying so, then refused with one line."""
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            return VAEService.from_experiment(path)
        except ExperimentError as exc:
            not_yet = isinstance(exc, NoCheckpointYet) or not path.exists() or (path.is_dir()
                                                                                and not any(path.iterdir()))
            if not not_yet or wait_s <= 0 or time.monotonic() >= deadline:
                if isinstance(exc, NoCheckpointYet):
                    hint = f"; waited {wait_s:g} s" if wait_s > 0 else "; pass --wait SECONDS to wait for it"
                    raise NoCheckpointYet(f"{exc}{hint}") from exc
                raise
            if not told:
                print(f"waiting up to {wait_s:g} s for the first trial checkpoint of the search at {path}",
                      file=sys.stderr, flush=True)
                told = True
            time.sleep(1.0)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        for name in ("port", "concurrency", "max_queue", "torch_threads"):
            low = 1
            if getattr(args, name) < low or (name == "port" and args.port > 65535):
                raise ValueError(f"--{name.replace('_', '-')} is out of range: {getattr(args, name)}")
        auth = _auth_from_env()
        service = _load_service(args)
    except (ValueError, ExperimentError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(args.torch_threads)
    # Uploads and sketches are opened by serve.images only (serve.components), with the allowed formats and
    # the size checked first. As a second line, Pillow itself refuses, from the header and before decoding,
    # images over 2 * MAX_IMAGE_PIXELS: at half the app's cap, nothing larger than the cap is ever decoded.
    Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS // 2
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    demo = build_app(service)
    # api_open=False closes the /gradio_api/run/<name> (and /api/<name>) routes, which would run handlers
    # outside the queue and so outside --concurrency and --max-queue; /call/<name> and the browser's
    # /queue/join go through the queue.
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.max_queue, api_open=False)
    demo.launch(server_name=args.host, server_port=args.port, auth=auth, share=args.share, max_file_size=MAX_UPLOAD,
                css=CSS, ssr_mode=False, mcp_server=False, enable_monitoring=False, show_error=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
