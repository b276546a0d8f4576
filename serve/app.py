"""The Gradio web app: layout and wiring only; every request is handled by serve.service.

    python -m serve.app                         # the latest experiment under results/
    python -m serve.app --experiment results/NAME
    python -m serve.app --checkpoint runs/vae-512-64/checkpoint --port 7861

Each view is also an API endpoint (gradio_client, or POST /gradio_api/call/<name>): /generate, /prior,
/interpolate, /reconstruct, /model_info, /switch_model; every call goes through the queue
(--concurrency, --max-queue), and the queue-bypassing /gradio_api/run/<name> routes are closed.
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
from serve.service import (  # noqa: E402
    MAX_NOISE,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_SOURCES,
    MAX_STEPS,
    MAX_TEMPERATURE,
    MIN_STEPS,
    InvalidRequest,
    VAEService,
)
from vae.checkpoint import EXAMPLES_PER_CLASS, CheckpointError  # noqa: E402

AUTH_ENV = "VAESEARCH_AUTH"
MAX_UPLOAD = "10mb"
MAX_SIDE = int(MAX_INPUT_PIXELS**0.5)
UPLOAD_LIMITS = (f"{FORMAT_NAMES} only; at most {MAX_UPLOAD.upper().replace('MB', ' MB')} and "
                 f"{MAX_INPUT_PIXELS:,} pixels (e.g. {MAX_SIDE}x{MAX_SIDE})")
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
        return (f"Serving **{info['serving']}** ({where}{info['dataset']}, latent width {config['latent_width']}, "
                f"code width {config['reparam_width']}" + (f", neg-ELBO {metric:.2f} nats" if metric else "") + ")")

    def leaderboard() -> pd.DataFrame:
        columns, rows = service.leaderboard()
        return pd.DataFrame(rows, columns=columns)

    @_user_errors
    def generate(class_index: int, n_samples: int, noise_scale: float, seed: int, n_sources: int):
        out = service.generate(class_index, n_samples, noise_scale, seed, n_sources)
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

    def model_info():
        return service.model_info(), leaderboard(), served_line()

    @_user_errors
    def switch_model(trial_id: str):
        served = service.switch_model(trial_id)
        return (service.model_info(), leaderboard(), served_line(),
                f"Now serving trial `{served.trial_id}` ({served.label}) for every user of this app.")

    with gr.Blocks(title="vaesearch: generate digits", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# vaesearch\nA variational autoencoder found by hyperparameter search. "
                    "Generate new images of a class from real examples' posteriors, sample the prior, "
                    "walk the latent space, or draw your own digit.")
        served_md = gr.Markdown(served_line(), label="Served model")

        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column(scale=1, min_width=240):
                    g_class = gr.Dropdown(class_choices, value=class_choices[0][1], label="Class",
                                          elem_id="generate-class")
                    g_n = gr.Slider(1, MAX_SAMPLES, value=16, step=1, label="Samples")
                    g_noise = gr.Slider(0, MAX_NOISE, value=1.0, step=0.05, label="Noise scale",
                                        info="0 decodes the posterior mean; 1 samples the posterior")
                    g_sources = gr.Slider(1, MAX_SOURCES, value=1, step=1, label="Real examples to start from")
                    g_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")
                    g_button = gr.Button("Generate", variant="primary", elem_id="generate-button")
                with gr.Column(scale=1, min_width=160):
                    g_examples = _output_image("Real example(s)", height=180, elem_id="generate-examples")
                with gr.Column(scale=3):
                    g_samples = _output_image("Generated samples", height=320, elem_id="generate-samples")
            g_button.click(generate, [g_class, g_n, g_noise, g_seed, g_sources], [g_examples, g_samples],
                           api_name="generate")

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

        with gr.Tab("Model"):
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
        demo.load(model_info, None, [m_info, m_board, served_md], api_name="model_info")
    quiet_refusals(demo)
    return demo


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serve.app",
        description="Serve a VAE checkpoint as a Gradio web app (Generate, Prior, Interpolate, Reconstruct, Model). "
        f"Set {AUTH_ENV}=user:password to require a login.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--experiment", type=Path, default=None,
                        help=f"an exported search experiment (default: the latest under {DEFAULT_STORAGE}/)")
    source.add_argument("--checkpoint", type=Path, default=None, help="serve one checkpoint folder instead")
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
    return VAEService.from_experiment(experiment)


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
