"""Draw the toy world (images, full labels, training labels) to book/figures/toy_world.png."""

from __future__ import annotations

import argparse
from pathlib import Path

from cagnet.data.toy import toy_world_figure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "book" / "figures"
                        / "toy_world.png")
    parser.add_argument("--count", type=int, default=6, help="images to show")
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig = toy_world_figure(count=args.count)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
