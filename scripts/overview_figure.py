"""Draw CaGNet's overview (cagnet.viz.overview_figure) to book/figures/overview.png."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from cagnet.viz import overview_figure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "book" / "figures"
                        / "overview.png")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    overview_figure().savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
