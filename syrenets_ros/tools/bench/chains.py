"""``syrenets-ros bench chains``: learning planar n-link chains exactly, and what it costs (issue 21).

For each number of links and record length, the chain (:mod:`syrenets_ros.dynamics.chain`)
moves exactly along a multisine sampled at 1 kHz, and the integral refit
(``regression.fit_integral``) on the learner's library (grammar with dissipation) is timed in
CPU seconds of this process on one torch thread. Reported: columns, identifiable columns,
selected vs true terms, whether exactly the true terms were selected, the largest relative
coefficient error, and the relative torque error on wide-range random states (q in ±π,
q̇ in ±3, q̈ in ±5) that the record never visited.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from syrenets_ros.dynamics import chain
from syrenets_ros.learning.regression import fit_integral
from syrenets_ros.learning.terms import TermLibrary, true_chain_terms
from syrenets_ros.plant.excitation import MultiSine

# Rods from the paper's double pendulum outwards, lighter and shorter towards the tip.
MASSES = (3.0, 1.0, 0.5, 0.4, 0.3, 0.2, 0.1)
LENGTHS = (2.67, 1.67, 1.2, 1.0, 0.8, 0.6, 0.5)
WIDE_STATES = 20_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--links", type=int, nargs="+", default=[2, 3, 4], help="chain lengths (default 2 3 4)")
    parser.add_argument("--seconds", type=float, nargs="+", default=[8.0, 60.0], help="record lengths (default 8 60)")
    parser.add_argument("--base-frequency", type=float, default=0.1, help="multisine base frequency in Hz (default 0.1)")
    parser.add_argument("--harmonics", type=int, default=5, help="multisine harmonics per joint (default 5)")
    parser.add_argument("--json", type=Path, default=Path("runs/bench_chains.json"), help="output JSON path")


def _wide_error(model, params: chain.ChainParams) -> float:
    gen = torch.Generator().manual_seed(1)
    q, qd, qdd = ((torch.rand(WIDE_STATES, params.n_links, generator=gen, dtype=torch.float64) * 2 - 1) * scale
                  for scale in (torch.pi, 3.0, 5.0))
    expected = chain.inverse_dynamics(q, qd, qdd, params)
    return float((model.torque(q, qd, qdd) - expected).norm() / expected.norm())


def measure(links: int, seconds: float, base_frequency: float, harmonics: int) -> dict[str, object]:
    """One fit: exactness, errors and CPU seconds."""
    if not 1 <= links <= len(MASSES):
        raise ValueError(f"links must be in 1..{len(MASSES)}")
    params = chain.ChainParams(MASSES[:links], LENGTHS[:links])
    excitation = MultiSine.from_seed(0, 1.0, base_frequency, harmonics=harmonics, joints=links)
    record = chain.multisine_record(params, excitation, seconds)
    library = TermLibrary.grammar(links, dissipation=True)
    started = time.process_time()
    model = fit_integral(library, record.stamp, record.q, record.qd, record.qdd, record.tau)
    cpu = time.process_time() - started
    truth = true_chain_terms(params)
    return {"links": links, "seconds": seconds, "columns": len(library),
            "identifiable": model.fit_report["identifiable"], "selected": len(model.library),
            "true_terms": len(truth.terms), "exact": set(model.library.columns) == set(truth.terms),
            "coefficient_error": max(abs(model.coefficient_of(t) / c - 1.0)
                                     for t, c in zip(truth.terms, truth.coefficients.tolist())),
            "wide_torque_error": _wide_error(model, params), "cpu_s": cpu}


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(1)
    rows = []
    print(f"multisine: {args.harmonics} harmonics of {args.base_frequency} Hz, 1 kHz, one torch thread")
    print("links  seconds  columns  identifiable  selected/true  exact  coef err  wide err   CPU s")
    for links in args.links:
        for seconds in args.seconds:
            row = measure(links, seconds, args.base_frequency, args.harmonics)
            rows.append(row)
            print(f"{links:5d}  {seconds:7.0f}  {row['columns']:7d}  {row['identifiable']:12d}  "
                  f"{row['selected']:6d}/{row['true_terms']:<6d}  {str(row['exact']):5s}  "
                  f"{row['coefficient_error']:8.1e}  {row['wide_torque_error']:8.1e}  {row['cpu_s']:6.1f}", flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"base_frequency": args.base_frequency, "harmonics": args.harmonics,
                                     "rows": rows}, indent=2))
    return 0
