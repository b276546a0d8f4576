"""Are "generate class d" samples of class d, and are they varied? Judged by an independent classifier.

1. A small CNN digit classifier is trained on the *training* split (seeded; cached under
   ``results/sample_quality/`` so later runs reuse it) and its accuracy on the test split printed.
2. For the served model (``--experiment`` as the app serves it, or ``--checkpoint``), per mode:
   * ``examples``: the app's "real examples' posteriors" mode as the app asks it by default: requests of
     16 samples, each drawn from the posterior of one real test example of the class (a new seed each);
   * ``class_gaussian``: codes drawn from the class's Gaussian in the latent space (vae.class_gaussians);
   * ``prior``: codes from N(0, I), which have no class.
   class-consistency = share of class-d samples the classifier calls d (for the prior: the entropy of the
   predicted-class histogram, ln 10 = 2.30 nats when every class is equally common), and diversity = mean
   pairwise Euclidean distance (pixels in [0, 1]) between samples of the same class, next to the same figure
   for the real test images of that class; ``within_request_diversity`` is the same figure within each
   16-sample request (one Generate click: for ``examples``, the draws from one real example's posterior).
3. Writes the figures to benchmarks/results/sample_quality.json (full results, with a noise-scale sweep,
   under benchmarks/out/) and a PNG grid per mode (a row per class) to benchmarks/results/.

    VAESEARCH_DATA_DIR=../shared/mnist python benchmarks/sample_quality.py --experiment results/<name>
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from reporting import add_output_args, write_reports  # noqa: E402

from serve.service import DEFAULT_NOISE_SCALE  # noqa: E402
from vae.checkpoint import Checkpoint, CheckpointError, load_checkpoint  # noqa: E402
from vae.class_gaussians import sample_class  # noqa: E402
from vae.data import DATASETS, DataError, DataSplits, load_splits  # noqa: E402
from vae.sample import generate_class, sample_prior, save_grid  # noqa: E402

CLASSIFIER_EPOCHS = 8
REQUEST_SAMPLES = 16  # the app's default Generate request
TARGET_CONSISTENCY = 0.95
TARGET_DIVERSITY_RATIO = 0.5
GRID_PER_CLASS = 10


class DigitCNN(nn.Module):
    """Two conv blocks and two linear layers (about 0.2 M parameters): about 97-98% on held-out digits."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.25), nn.Linear(64 * 7 * 7, 64), nn.ReLU(), nn.Linear(64, classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.reshape(-1, 1, 28, 28))


def train_classifier(data: DataSplits, seed: int, cache: Path) -> tuple[DigitCNN, float, bool]:
    """The classifier (trained on data.train, or loaded from ``cache``), its test accuracy, and whether cached."""
    classes = len(DATASETS[data.dataset].class_names)
    model = DigitCNN(classes)
    key = {"dataset": data.dataset, "seed": seed, "epochs": CLASSIFIER_EPOCHS, "train_images": len(data.train)}
    meta_path, weights = cache / "classifier.json", cache / "classifier.safetensors"
    if meta_path.is_file() and weights.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("key") == key:
            model.load_state_dict(load_file(str(weights)))
            return model.eval(), float(meta["test_accuracy"]), True
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    images, labels = data.train.images, data.train.labels
    for _ in range(CLASSIFIER_EPOCHS):
        model.train()
        for batch in torch.randperm(len(images), generator=generator).split(128):
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    accuracy = float((predict(model, data.test.images) == data.test.labels).float().mean())
    cache.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    meta_path.write_text(json.dumps({"key": key, "test_accuracy": accuracy}, indent=2))
    return model, accuracy, False


@torch.inference_mode()
def predict(classifier: DigitCNN, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([classifier(images[i : i + 1000]).argmax(dim=1) for i in range(0, len(images), 1000)])


def diversity(images: torch.Tensor) -> float:
    """Mean pairwise Euclidean distance between the flattened images."""
    return float(torch.pdist(images.reshape(len(images), -1).double()).mean())


def class_samples(checkpoint: Checkpoint, mode: str, cls: int, n: int, noise_scale: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed * 1000 + cls)
    if mode == "class_gaussian":
        return sample_class(checkpoint.model, checkpoint.class_gaussians, cls, n, noise_scale=noise_scale,
                            generator=generator)
    bank = checkpoint.examples
    requests = [generate_class(checkpoint.model, bank.images, bank.labels, cls, REQUEST_SAMPLES, n_sources=1,
                               noise_scale=noise_scale, generator=generator).samples
                for _ in range(math.ceil(n / REQUEST_SAMPLES))]
    return torch.cat(requests)[:n]


def evaluate_mode(checkpoint: Checkpoint, classifier: DigitCNN, data: DataSplits, mode: str, n: int,
                  noise_scale: float, seed: int) -> tuple[dict, list[torch.Tensor]]:
    classes = len(DATASETS[data.dataset].class_names)
    per_class, grids = {}, []
    for cls in range(classes):
        samples = class_samples(checkpoint, mode, cls, n, noise_scale, seed)
        real = data.test.images[data.test.labels == cls]
        hits = float((predict(classifier, samples) == cls).float().mean())
        within = sum(diversity(chunk) for chunk in samples.split(REQUEST_SAMPLES)) / math.ceil(n / REQUEST_SAMPLES)
        per_class[str(cls)] = {"class_consistency": round(hits, 4), "diversity": round(diversity(samples), 3),
                               "within_request_diversity": round(within, 3),
                               "real_diversity": round(diversity(real), 3)}
        grids.append(samples[:GRID_PER_CLASS])
    return summarise(per_class), grids


def summarise(per_class: dict) -> dict:
    mean = {k: sum(v[k] for v in per_class.values()) / len(per_class)
            for k in ("class_consistency", "diversity", "within_request_diversity", "real_diversity")}
    return {"class_consistency": round(mean["class_consistency"], 4), "diversity": round(mean["diversity"], 3),
            "within_request_diversity": round(mean["within_request_diversity"], 3),
            "real_diversity": round(mean["real_diversity"], 3),
            "diversity_ratio": round(mean["diversity"] / mean["real_diversity"], 3), "per_class": per_class}


def evaluate_prior(checkpoint: Checkpoint, classifier: DigitCNN, data: DataSplits, n: int, seed: int) -> tuple:
    classes = len(DATASETS[data.dataset].class_names)
    samples = sample_prior(checkpoint.model, n * classes, generator=torch.Generator().manual_seed(seed))
    predicted = predict(classifier, samples)
    share = torch.bincount(predicted, minlength=classes).double() / len(predicted)
    entropy = float(-(share[share > 0] * share[share > 0].log()).sum())
    per_class = {str(c): {"predicted_share": round(float(share[c]), 4),
                          "diversity": round(diversity(samples[predicted == c]), 3) if (predicted == c).sum() > 1
                          else None} for c in range(classes)}
    result = {"class_consistency": None, "predicted_class_entropy_nats": round(entropy, 4),
              "max_entropy_nats": round(math.log(classes), 4), "diversity": round(diversity(samples), 3),
              "real_diversity": round(diversity(data.test.images), 3), "per_class": per_class}
    result["diversity_ratio"] = round(result["diversity"] / result["real_diversity"], 3)
    rows = [samples[predicted == c][:GRID_PER_CLASS] for c in range(classes)]
    return result, rows


def load_served(args: argparse.Namespace) -> tuple[Checkpoint, str]:
    if args.checkpoint is not None:
        return load_checkpoint(args.checkpoint), args.checkpoint.resolve().name  # a name, not a machine path
    from serve.service import VAEService

    service = VAEService.from_experiment(args.experiment)
    return service.served.checkpoint, f"experiment {args.experiment.resolve().name} ({service.served.label})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--experiment", type=Path, help="a search's experiment folder, served as the app serves it")
    source.add_argument("--checkpoint", type=Path, help="a vae.checkpoint folder")
    parser.add_argument("--samples", type=int, default=160, help="samples per class and mode (default 160)")
    parser.add_argument("--noise-scale", type=float, default=DEFAULT_NOISE_SCALE,
                        help=f"noise scale (default {DEFAULT_NOISE_SCALE:g}, the Generate view's)")
    parser.add_argument("--sweep", type=float, nargs="*", default=[0.5, 1.0, 1.25],
                        help="further noise scales to report in the full results (default 0.5 1 1.25)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("results") / "sample_quality",
                        help="where the classifier is cached (default results/sample_quality/)")
    parser.add_argument("--grids", type=Path, default=HERE / "results", help="folder for the PNG grids")
    add_output_args(parser, "sample_quality")
    args = parser.parse_args()
    if args.samples < 2:
        print("error: --samples must be >= 2", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    try:
        checkpoint, served = load_served(args)
        data = load_splits(checkpoint.dataset, seed=0, device="cpu", log_fn=lambda m: print(m, file=sys.stderr))
    except (CheckpointError, DataError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    classifier, accuracy, cached = train_classifier(data, args.seed, args.cache)
    print(f"classifier: test accuracy {accuracy:.4f} ({'cached' if cached else 'trained'} in {args.cache}, "
          f"{time.perf_counter() - start:.1f} s)")

    modes, grids = {}, {}
    for mode in ("examples", "class_gaussian"):
        if mode == "class_gaussian" and checkpoint.class_gaussians is None:
            print("class_gaussian: the checkpoint has no class Gaussians; skipped", file=sys.stderr)
            continue
        modes[mode], grids[mode] = evaluate_mode(checkpoint, classifier, data, mode, args.samples,
                                                 args.noise_scale, args.seed)
    modes["prior"], grids["prior"] = evaluate_prior(checkpoint, classifier, data, args.samples, args.seed)
    sweep = {}
    for scale in args.sweep:
        sweep[str(scale)] = {mode: {k: v for k, v in evaluate_mode(checkpoint, classifier, data, mode, args.samples,
                                                                   scale, args.seed)[0].items() if k != "per_class"}
                             for mode in modes if mode != "prior"}

    print(f"served model: {served}; noise scale {args.noise_scale:g}; {args.samples} samples per class and mode")
    print(f"{'mode':<15} {'consistency':>11} {'diversity':>9} {'per click':>9} {'real div.':>9} {'ratio':>6}  "
          "weakest classes")
    for mode, result in modes.items():
        if mode == "prior":
            print(f"{mode:<15} {'-':>11} {result['diversity']:>9.2f} {'-':>9} {result['real_diversity']:>9.2f} "
                  f"{result['diversity_ratio']:>6.2f}  predicted-class entropy "
                  f"{result['predicted_class_entropy_nats']:.3f} of {result['max_entropy_nats']:.3f} nats")
            continue
        weakest = sorted(result["per_class"].items(), key=lambda kv: kv[1]["class_consistency"])[:3]
        print(f"{mode:<15} {result['class_consistency']:>11.3f} {result['diversity']:>9.2f} "
              f"{result['within_request_diversity']:>9.2f} {result['real_diversity']:>9.2f} "
              f"{result['diversity_ratio']:>6.2f}  "
              + ", ".join(f"{c}: {v['class_consistency']:.2f}" for c, v in weakest))
    for scale, by_mode in sweep.items():
        print(f"noise scale {scale}: " + "; ".join(f"{m} consistency {v['class_consistency']:.3f}, diversity ratio "
                                                   f"{v['diversity_ratio']:.2f}" for m, v in by_mode.items()))
    gaussian = modes.get("class_gaussian")
    targets = {
        "class_gaussian_consistency_at_least_95": bool(
            gaussian and gaussian["class_consistency"] >= TARGET_CONSISTENCY),
        "class_gaussian_diversity_at_least_half_of_real": bool(
            gaussian and gaussian["diversity_ratio"] >= TARGET_DIVERSITY_RATIO),
    }
    for name, met in targets.items():
        print(f"target {name}: {'met' if met else 'MISSED'}")
    args.grids.mkdir(parents=True, exist_ok=True)
    for mode, rows in grids.items():
        cells = [row for row in rows if len(row)]
        path = save_grid(torch.cat(cells), args.grids / f"sample_quality_{mode}.png", nrow=GRID_PER_CLASS)
        print(f"wrote {path} (a row per class{', by predicted class' if mode == 'prior' else ''})")
    config = checkpoint.config
    headline = {
        "classifier_test_accuracy": round(accuracy, 4),
        "modes": modes,
        "served_model": served,
        "model": {**config.to_dict(), "val_neg_elbo": checkpoint.meta.get("metrics", {}).get("val_neg_elbo"),
                  "test_neg_elbo": checkpoint.meta.get("metrics", {}).get("test_neg_elbo")},
        "noise_scale": args.noise_scale, "samples_per_class": args.samples, "seed": args.seed,
        "targets": targets,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
                   f"torch {torch.__version__}",
    }
    write_reports(args.out, {**headline, "noise_sweep": sweep}, args.results, headline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
