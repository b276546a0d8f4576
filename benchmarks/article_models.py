"""Train the article's five (latent_width, reparam_width) pairs and tabulate neg-ELBO in nats.

Each pair gets the same data split, seed, Adam lr 3e-4 and batch 128 (TrainConfig defaults) for
``--epochs`` epochs; the table gives train / validation / test neg-ELBO after the last epoch (test
split never used for choices), the best validation epoch, active code units and wall time, and is
printed as Markdown for the README.

    python benchmarks/article_models.py --data-dir ../shared/mnist --epochs 50
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from reporting import add_output_args, add_threads_arg, apply_threads, write_reports

from vae.config import ModelConfig, TrainConfig
from vae.data import DATASETS, DataError, load_splits
from vae.model import count_parameters
from vae.train import evaluate, fit, pick_device

ARTICLE_PAIRS = ((32, 4), (64, 8), (128, 16), (256, 32), (512, 64))



def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="IDX folder (default: $VAESEARCH_DATA_DIR, else download)")
    parser.add_argument("--dataset", choices=sorted(DATASETS), default="mnist")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda[:N]")
    add_output_args(parser, "article_models")
    add_threads_arg(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if not apply_threads(args.threads):
        return 2
    try:
        train_config = TrainConfig(lr=args.lr, batch_size=args.batch_size, rounds=args.epochs, seed=args.seed)
        device = pick_device(args.device)
        data = load_splits(args.dataset, args.data_dir, seed=args.seed, device=device,
                           log_fn=lambda m: print(m, file=sys.stderr))
    except (ValueError, RuntimeError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = []
    for latent_width, reparam_width in ARTICLE_PAIRS:
        config = ModelConfig(latent_width, reparam_width)
        start = time.perf_counter()
        result = fit(config, train_config, data, device=device)
        elapsed = time.perf_counter() - start
        last = result.history[-1]
        best = min(result.history, key=lambda h: h["val_neg_elbo"])
        test = evaluate(result.model, data.test.images, seed=args.seed)
        rows.append({
            "latent_width": latent_width, "reparam_width": reparam_width, "parameters": count_parameters(config),
            "train_neg_elbo": last["train_neg_elbo"], "val_neg_elbo": last["val_neg_elbo"],
            "val_recon": last["val_recon"], "val_kl": last["val_kl"], "test_neg_elbo": test["neg_elbo"],
            "best_val_neg_elbo": best["val_neg_elbo"], "best_val_epoch": best["round"],
            "active_units": last["val_active_units"], "time_s": elapsed,
        })
        r = rows[-1]
        print(f"{latent_width}/{reparam_width}: val {r['val_neg_elbo']:.2f}, test {r['test_neg_elbo']:.2f} nats "
              f"({elapsed:.0f} s)", file=sys.stderr, flush=True)

    print(f"\n{args.dataset}, {len(data.train)} training images, {args.epochs} epochs, lr {args.lr}, "
          f"batch {args.batch_size}, seed {args.seed}, {device.type}, {torch.get_num_threads()} threads\n")
    print("| latent_width | reparam_width | parameters | train | validation | test | recon + KL (val) "
          "| best val (epoch) | active units | time |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['latent_width']} | {r['reparam_width']} | {r['parameters']:,} | {r['train_neg_elbo']:.1f} "
              f"| {r['val_neg_elbo']:.1f} | {r['test_neg_elbo']:.1f} | {r['val_recon']:.1f} + {r['val_kl']:.1f} "
              f"| {r['best_val_neg_elbo']:.1f} ({r['best_val_epoch']}) | {r['active_units']}/{r['reparam_width']} "
              f"| {r['time_s']:.0f} s |")
    settings = {"dataset": args.dataset, "train_images": len(data.train), "val_images": len(data.val),
                "test_images": len(data.test), "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
                "seed": args.seed, "device": device.type, "threads": torch.get_num_threads(),
                "torch": torch.__version__, "unit": "nats per image (neg-ELBO, one posterior sample)"}
    report = {"settings": settings, "rows": rows}
    write_reports(args.out, report, args.results, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
