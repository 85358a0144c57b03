"""``python -m rerankdb.bench <name>``: run one benchmark and print its figures."""

from __future__ import annotations

import argparse

from rerankdb.bench import (
    citus,
    features,
    fleet,
    fold_scale,
    hybrid,
    hybrid_search,
    loads,
    rerank,
    scale,
    sequence,
    short_term,
    soak,
    worker,
)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m rerankdb.bench", description=__doc__)
    sub = parser.add_subparsers(dest="name", required=True)
    r = sub.add_parser("rerank", help="rerank latency and throughput vs baselines")
    rerank.add_arguments(r)
    r.set_defaults(run=rerank.run)
    worker.add_arguments(sub)
    soak.add_arguments(sub)
    short_term.add_arguments(sub)
    features.add_arguments(sub)
    hybrid.add_arguments(sub)
    hybrid_search.add_arguments(sub)
    scale.add_arguments(sub)
    fold_scale.add_arguments(sub)
    fleet.add_arguments(sub)
    sequence.add_arguments(sub)
    loads.add_arguments(sub)
    citus.add_arguments(sub)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
