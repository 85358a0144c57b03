"""``python -m rerankdb.bench <name>``: run one benchmark and print its figures."""

from __future__ import annotations

import argparse

from rerankdb.bench import rerank


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m rerankdb.bench", description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    rerank.add_arguments(sub.add_parser("rerank", help="rerank latency and throughput vs baselines"))
    args = parser.parse_args()
    if args.name == "rerank":
        rerank.run(args)


if __name__ == "__main__":
    main()
